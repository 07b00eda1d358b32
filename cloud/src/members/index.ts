import { esl, MEMBER_RECOGNIZED, type MemberRecognized } from '@storelink/protocols';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { SendCommandInput } from '../commands/service.ts';
import type { Order } from '../orders/machine.ts';
import type { PaymentNotice } from '../payments/wechat.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import { SqlMembersRepo, sqlMembersTx } from './repo.ts';
import { createMembersMetrics, MembersService } from './service.ts';

export * from './coupons.ts';
export * from './ids.ts';
export { MemoryMembersRepo } from './memory-repo.ts';
export * from './repo.ts';
export { default as membersRoutes, type MembersRoutesOptions } from './routes.ts';
export * from './service.ts';
export * from './types.ts';

export interface MembersConfig {
  /** Member-channel webhook (mini-program / app backend) that receives issued coupons. */
  webhook?: { url: string; secret: string };
  /** Store display per gateway (signage screen id on that gateway) for coupons and notices. */
  displays?: Record<string, string>;
  /** Delivery/expiry sweep period (ms); 0 = never (tests call `service.deliverDue()`). */
  sweepMs?: number;
  retryMs?: number;
}

export interface Members {
  service: MembersService;
  /** The orders' `onPaid` hook: a paid order is a purchase of the payer's member. */
  onPaid(order: Order, notice: PaymentNotice): Promise<void>;
  close(): Promise<void>;
}

/**
 * [MEMBER-PAY-1] a paid order becomes a purchase of the member holding the payer's
 * channel id (WeChat openid / Alipay user id), keyed by the order id; if the order
 * redeemed a member's coupon, the payer id is linked to that member (evidence: the order).
 */
export async function recordPayment(
  service: MembersService,
  order: Order,
  notice: PaymentNotice,
  at: number,
) {
  if (notice.payerId === undefined) return undefined;
  const red = await service.redemptionFor(order.id);
  const alipay = (order.provider ?? '').includes('alipay');
  return service.record({
    key: `order:${order.id}`,
    id: { type: alipay ? 'alipay_user_id' : 'wechat_openid', value: notice.payerId },
    ...(red ? { links: [{ type: 'member', value: red.memberId }] } : {}),
    kind: 'purchase',
    channel: alipay ? 'alipay' : 'wechat',
    store: order.site,
    gateway: order.gateway,
    amountCents: order.amountCents,
    at,
  });
}

/** The display content of a coupon: the ESL signage content shape (docs/esl.md), a QR of the coupon id. */
export function couponDisplayContent(d: {
  text: string;
  valueCents: number;
  couponId?: string;
}): esl.LabelContent {
  return {
    sku: 'COUPON',
    name: d.text.slice(0, 64),
    priceCents: d.valueCents,
    currency: 'CNY',
    ...(d.couponId ? { barcode: d.couponId.slice(0, 32), code: 'qr' as const } : { code: 'none' as const }),
  };
}

/**
 * Wires members into a running cloud: the repo on the store's SQL; recognitions
 * (`member.recognized`) recorded in the ingest transaction so the event, the profile
 * and any coupon it triggers commit together; coupons shown on the store display as an
 * `esl.campaign` with one display (the ESL signage path, docs/esl.md) and delivered to
 * the member's channel webhook; a sweep retries deliveries and expires coupons.
 */
export function startMembers(opts: {
  store: SqlCloudStore;
  sendCommand: (c: SendCommandInput) => Promise<unknown>;
  config?: MembersConfig;
  registry?: Registry;
  logger?: Logger;
  now: () => number;
}): Members {
  const cfg = opts.config ?? {};
  const logger = opts.logger?.child({ component: 'members' });
  const service = new MembersService({
    repo: new SqlMembersRepo(opts.store.sql),
    now: opts.now,
    metrics: createMembersMetrics(opts.registry),
    ...(cfg.webhook ? { webhook: cfg.webhook } : {}),
    ...(cfg.retryMs !== undefined ? { retryMs: cfg.retryMs } : {}),
    ...(logger ? { logger } : {}),
    showOnDisplay: async (d) => {
      const display = cfg.displays?.[d.gateway];
      if (!display) throw new Error(`no display configured for gateway ${d.gateway}`);
      // The command id is derived from the coupon: a retry after a lost answer is the same command.
      if (await opts.store.getCommand(d.commandId)) return;
      await opts.sendCommand({
        id: d.commandId,
        gateway: d.gateway,
        type: esl.ESL_CAMPAIGN,
        payload: {
          campaignId: `mbr-${d.commandId}`,
          items: [],
          displays: [{ display, content: couponDisplayContent(d) }],
        },
      });
    },
  });
  opts.store.onIngestEvents(async (q, batch) => {
    const tx = sqlMembersTx(q);
    let issued = 0;
    for (const e of batch.events) {
      if (e.type !== MEMBER_RECOGNIZED) continue;
      const p = e.payload as MemberRecognized;
      const r = await service.recordInTx(tx, {
        // [MEMBER-EVENT-ONCE-1] a camera's resend carries the same payload id.
        key: p.id !== undefined ? `rec:${batch.gateway}:${e.device}:${p.id}` : `evt:${e.id}`,
        id: { type: 'member', value: p.memberId },
        kind: 'recognized',
        channel: 'store',
        store: batch.site,
        gateway: batch.gateway,
        at: e.ts,
      });
      issued += r.coupons.length;
    }
    // After the ingest transaction commits.
    if (issued) service.kick(20);
  });
  let timer: NodeJS.Timeout | undefined;
  const sweepMs = cfg.sweepMs ?? 2_000;
  if (sweepMs > 0) {
    timer = setInterval(() => {
      service
        .deliverDue()
        .then(() => service.expireDue())
        .catch((e: unknown) => logger?.warn({ err: (e as Error).message }, 'members sweep failed'));
    }, sweepMs);
    timer.unref();
  }
  return {
    service,
    onPaid: async (order, notice) => {
      await recordPayment(service, order, notice, opts.now());
    },
    close: async () => {
      if (timer) clearInterval(timer);
    },
  };
}
