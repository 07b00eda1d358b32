import {
  type CommandEnvelope,
  checkEventPayload,
  eventTypeSpec,
  newId,
  type UnsequencedEvent,
  VEND_ALARM,
  VEND_DISPENSE,
  VEND_RESULT,
  VEND_TELEMETRY,
  type VendAlarm,
  type VendDispense,
  type VendResult,
  type VendTelemetry,
} from '@storelink/protocols';
import type { Logger } from 'pino';
import { Gauge, Histogram, type Registry } from 'prom-client';
import { refuseCommand } from '../commands/index.ts';
import type { EdgeConfig } from '../config.ts';
import { counterMirror } from '../metrics.ts';
import { edgeError } from '../errors.ts';
import { debounceLine } from '../gpio/debounce.ts';
import type { Direction, Edge, Line } from '../gpio/line.ts';
import { createOnoffLine } from '../gpio/onoff.ts';
import type { KvStore } from '../outbox/types.ts';
import {
  type VendOutcome,
  type VmcCounters,
  VmcDriver,
  type VmcDriverOptions,
  type VmcTelemetry,
} from './driver.ts';

/**
 * Vending on the edge agent: when the config has a `vending` section the agent owns one
 * VmcDriver on the serial port, runs `vend.dispense` commands through it (the command
 * router's ledger gives once-per-command-id [CMD-ONCE-1], the driver's ledger
 * once-per-order [VEND-ONCE-1]), and reports what the machine says through the outbox:
 * `vend.result` (tx), `vend.alarm` (event: door, EVA-DTS codes, link), `vend.telemetry`
 * (telemetry: temperature, stock). See docs/architecture.md "Vending on the edge".
 */

export type VendingConfig = NonNullable<EdgeConfig['vending']>;
type GpioSpec = Exclude<VendingConfig['dropGpio'], 'serial' | undefined>;
export type SerialBinding = NonNullable<VmcDriverOptions['binding']>;
/** Opens a GPIO line for the config spec (default: onoff sysfs via createOnoffLine). */
export type OpenGpioLine = (spec: GpioSpec, direction: Direction, edge: Edge) => Promise<Line>;

export interface VendingStatus {
  path: string;
  link: { up: boolean; since: number | null; reason?: string };
  readerState: string;
  dropSource: 'gpio' | 'serial' | 'none';
  lastVend: (VendOutcome & { commandId: string; at: number }) | null;
  counters: VmcCounters;
}

export interface Vending {
  readonly driver: VmcDriver;
  status(): VendingStatus;
  stop(): Promise<void>;
}

export interface StartVendingOptions {
  config: VendingConfig;
  site: string;
  gateway: string;
  now: () => number;
  logger: Logger;
  /** The agent's KvStore: the driver's per-order ledger lives under `vmc/vend/`. */
  ledger: Pick<KvStore, 'get' | 'put'>;
  append: (ev: UnsequencedEvent) => Promise<unknown>;
  commands: {
    registerExecutor(
      type: string,
      fn: (cmd: CommandEnvelope) => Promise<unknown>,
      opts?: { syncsBeforeActing?: boolean },
    ): void;
  };
  metrics: VmcMetrics;
  binding?: SerialBinding;
  openGpioLine?: OpenGpioLine;
}

export interface VmcMetrics {
  /** Points the scrape-time counters at the running driver. */
  attach(driver: VmcDriver | undefined): void;
  vendDuration: Histogram<'outcome'>;
  approveLatency: Histogram;
}

/**
 * `storelink_edge_vmc_*` on the agent's registry. Counters mirror the driver's own
 * counters at scrape time (the driver counts; we never double-count); the histograms are
 * fed from its `outcome`/`approved` events.
 */
export function registerVmcMetrics(registry: Registry): VmcMetrics {
  let driver: VmcDriver | undefined;
  const registers = [registry];
  const mirror = counterMirror(registry, () => driver?.counters);
  mirror(
    'storelink_edge_vmc_frames_total',
    'MDB frames on the vending serial link, by direction',
    ['dir'],
    (c) => [
      [{ dir: 'in' }, c.framesIn],
      [{ dir: 'out' }, c.framesOut],
    ],
  );
  mirror(
    'storelink_edge_vmc_parse_errors_total',
    'bytes from the controller that were not a valid frame, by error code',
    ['code'],
    (c) => Object.entries(c.parseErrors).map(([code, v]) => [{ code }, v]),
  );
  mirror(
    'storelink_edge_vmc_link_events_total',
    'vending serial link events: naks, retransmit requests, repeated answers, out of sequence, port opens/losses, link downs, controller resets',
    ['kind'],
    (c) => [
      [{ kind: 'nak_received' }, c.naksReceived],
      [{ kind: 'retransmit_request' }, c.retransmitRequests],
      [{ kind: 'repeated_response' }, c.repeatedResponses],
      [{ kind: 'out_of_sequence' }, c.outOfSequence],
      [{ kind: 'port_open' }, c.portOpens],
      [{ kind: 'port_loss' }, c.portLosses],
      [{ kind: 'link_down' }, c.linkDowns],
      [{ kind: 'vmc_reset' }, c.vmcResets],
    ],
  );
  mirror(
    'storelink_edge_vmc_vends_total',
    'vends finished by the VMC driver, by outcome and failure reason',
    ['outcome', 'reason'],
    (c) => [
      [{ outcome: 'dispensed', reason: '' }, c.vendsDispensed],
      ...Object.entries(c.vendsFailed).map(
        ([reason, v]) => [{ outcome: 'failed', reason }, v] as [Record<'outcome' | 'reason', string>, number],
      ),
    ],
  );
  mirror(
    'storelink_edge_vmc_vend_replays_total',
    'vends asked again for an order already vended (answered from the ledger, motor not run)',
    [],
    (c) => [[{}, c.vendReplays]],
  );
  mirror(
    'storelink_edge_vmc_unexpected_drops_total',
    'drop sensor pulses with no vend in progress',
    [],
    (c) => [[{}, c.unexpectedDrops]],
  );
  new Gauge({
    name: 'storelink_edge_vmc_link_up',
    help: '1 while the vending controller is polling the edge over the serial link',
    registers,
    collect() {
      this.set(driver?.isLinkUp ? 1 : 0);
    },
  });
  return {
    attach(d) {
      driver = d;
    },
    vendDuration: new Histogram({
      name: 'storelink_edge_vmc_vend_duration_seconds',
      help: 'time from the vend call to its outcome, by outcome',
      labelNames: ['outcome'],
      buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
      registers,
    }),
    approveLatency: new Histogram({
      name: 'storelink_edge_vmc_approve_seconds',
      help: 'time from the vend call to VEND APPROVED written on the serial line',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5],
      registers,
    }),
  };
}

const defaultOpenLine: OpenGpioLine = (spec, direction, edge) =>
  createOnoffLine(spec.pin, direction, edge, {
    ...(spec.base !== undefined ? { base: spec.base } : {}),
    ...(spec.activeLow !== undefined ? { activeLow: spec.activeLow } : {}),
  });

/** Starts the driver (it opens the port in the background and reopens with backoff) and registers `vend.dispense`. */
export async function startVending(o: StartVendingOptions): Promise<Vending> {
  const { config: cfg, logger, now } = o;
  const log = logger.child({ component: 'vending' });
  const openLine = o.openGpioLine ?? defaultOpenLine;
  const lines: Line[] = [];
  const closeLines = async () => {
    for (const l of lines.splice(0)) await l.close().catch(() => undefined);
  };
  let dropLine: Line | undefined;
  let doorLine: Line | undefined;
  let lockLine: Line | undefined;
  try {
    if (cfg.dropGpio && cfg.dropGpio !== 'serial') {
      dropLine = await openLine(cfg.dropGpio, 'in', 'both');
      lines.push(dropLine);
    }
    if (cfg.doorGpio) {
      const raw = await openLine(cfg.doorGpio, 'in', 'both');
      lines.push(raw);
      // A reed switch bounces: one door event per real open/close.
      doorLine = cfg.doorDebounceMs > 0 ? debounceLine(raw, cfg.doorDebounceMs) : raw;
    }
    if (cfg.lockGpio) {
      lockLine = await openLine(cfg.lockGpio, 'out', 'none');
      lines.push(lockLine);
    }
  } catch (e) {
    await closeLines();
    throw edgeError('EDGE_ERR_CONFIG', { errors: `/vending GPIO: ${(e as Error).message}` }, { cause: e });
  }
  const dropSource: VendingStatus['dropSource'] = dropLine
    ? 'gpio'
    : cfg.dropGpio === 'serial'
      ? 'serial'
      : 'none';
  if (dropSource === 'none') {
    // [VEND-DROP-1] nothing can confirm a drop: every vend will end no_drop (and be refunded).
    log.error('vending has no drop sensor (vending.dropGpio): every vend will fail no_drop');
  }

  const driver = new VmcDriver({
    path: cfg.serialPath,
    ...(cfg.baudRate !== undefined ? { baudRate: cfg.baudRate } : {}),
    ...(o.binding ? { binding: o.binding } : {}),
    ...(cfg.address !== undefined ? { address: cfg.address } : {}),
    ...(dropLine ? { dropLine } : {}),
    dropOverSerial: dropSource === 'serial',
    ...(doorLine ? { doorLine } : {}),
    ...(lockLine ? { lockLine } : {}),
    ledger: o.ledger,
    now,
    ...(cfg.dropWindowMs !== undefined ? { dropWindowMs: cfg.dropWindowMs } : {}),
    ...(cfg.linkTimeoutMs !== undefined ? { linkTimeoutMs: cfg.linkTimeoutMs } : {}),
    ...(cfg.vendResultTimeoutMs !== undefined ? { vendResultTimeoutMs: cfg.vendResultTimeoutMs } : {}),
    ...(cfg.reopenMinMs !== undefined ? { reopenMinMs: cfg.reopenMinMs } : {}),
    ...(cfg.reopenMaxMs !== undefined ? { reopenMaxMs: cfg.reopenMaxMs } : {}),
    log: { warn: (obj, msg) => log.warn(obj, msg), info: (obj, msg) => log.info(obj, msg) },
  });

  // Events are appended in the order the machine reported them.
  let chain: Promise<unknown> = Promise.resolve();
  const emit = (type: string, payload: unknown): Promise<unknown> => {
    const checked = checkEventPayload(type, payload);
    if (!checked.ok) {
      log.error({ type, err: checked.error.message }, 'vending event does not match its schema; not sent');
      return chain;
    }
    const spec = eventTypeSpec(type)!;
    const t = now();
    const ev: UnsequencedEvent = {
      id: newId(t),
      type,
      device: o.gateway,
      gateway: o.gateway,
      site: o.site,
      ts: t,
      rts: t,
      lane: spec.lane,
      payload,
    };
    chain = chain
      .then(() => o.append(ev))
      .catch((e: unknown) => log.error({ type, err: (e as Error).message }, 'vending event not stored'));
    return chain;
  };

  const link: VendingStatus['link'] = { up: false, since: null };
  let reportedLink: boolean | undefined;
  driver.on('link', ({ up, reason }) => {
    link.up = up;
    link.since = now();
    if (reason) link.reason = reason;
    else delete link.reason;
    // The driver says "down" on every failed reopen; report changes only.
    if (reportedLink === up) return;
    reportedLink = up;
    log[up ? 'info' : 'warn']({ up, reason }, 'vending controller link');
    emit(VEND_ALARM, {
      kind: 'link',
      up,
      ...(reason ? { reason: reason.slice(0, 256) } : {}),
    } satisfies VendAlarm);
  });
  driver.on('telemetry', (t: VmcTelemetry) => {
    if (t.kind === 'temperature' || t.kind === 'stock') emit(VEND_TELEMETRY, t satisfies VendTelemetry);
    else emit(VEND_ALARM, t satisfies VendAlarm);
  });
  driver.on('approved', ({ afterMs }) => o.metrics.approveLatency.observe(afterMs / 1000));
  driver.on('outcome', (r) => o.metrics.vendDuration.observe({ outcome: r.outcome }, r.durationMs / 1000));
  driver.on('protocolError', (e) => log.warn({ code: e.code }, e.message));
  o.metrics.attach(driver);

  let lastVend: VendingStatus['lastVend'] = null;
  o.commands.registerExecutor(
    VEND_DISPENSE,
    async (cmd) => {
      // The router has checked signature, expiry, the ledger and the payload schema.
      const p = cmd.payload as VendDispense;
      if (cfg.slots && !cfg.slots.includes(p.slot)) {
        throw refuseCommand(
          edgeError('EDGE_ERR_VMC_SLOT', { orderId: p.orderId, slot: p.slot, slots: cfg.slots.join(',') }),
        );
      }
      // The order's deadline until approval ends with the command: the cloud refunds an
      // expired dispense, so it must not start a motor after that [VEND-EXPIRY-1].
      const left = cmd.expiresAt - now();
      const r = await driver.vend({
        orderId: p.orderId,
        slot: p.slot,
        priceCents: p.priceCents,
        deadlineMs: Math.max(1, Math.min(cfg.vendDeadlineMs, left)),
        expiresAt: cmd.expiresAt,
      });
      lastVend = { ...r, commandId: cmd.id, at: now() };
      const ev: VendResult = {
        orderId: r.orderId,
        commandId: cmd.id,
        outcome: r.outcome,
        ...(r.reason ? { reason: r.reason } : {}),
        ...(r.code ? { code: r.code } : {}),
        slot: r.slot,
        durationMs: Math.max(0, Math.round(r.durationMs)),
        ...(r.approvedAfterMs !== undefined
          ? { approvedAfterMs: Math.max(0, Math.round(r.approvedAfterMs)) }
          : {}),
        ...(r.dropSeen !== undefined ? { dropSeen: r.dropSeen } : {}),
        at: now(),
      };
      // tx lane, before the command.result the router appends after we return.
      await emit(VEND_RESULT, ev);
      return {
        orderId: r.orderId,
        outcome: r.outcome,
        ...(r.reason ? { reason: r.reason } : {}),
        slot: r.slot,
        durationMs: ev.durationMs,
      };
      // The driver's per-order ledger is written with fsync before the motor runs [CMD-ONCE-2].
    },
    { syncsBeforeActing: true },
  );

  await driver.start();
  log.info({ path: cfg.serialPath, dropSource }, 'vending driver started');

  return {
    driver,
    status: () => ({
      path: cfg.serialPath,
      link: { ...link },
      readerState: driver.readerState,
      dropSource,
      lastVend,
      counters: structuredClone(driver.counters),
    }),
    async stop() {
      await driver.stop();
      o.metrics.attach(undefined);
      await chain;
      await closeLines();
    },
  };
}
