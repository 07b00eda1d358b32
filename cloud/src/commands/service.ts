import type { KeyObject } from 'node:crypto';
import {
  type CommandEnvelope,
  checkCommandBody,
  gatewayTopic,
  newId,
  signCommand,
  type UnsignedCommand,
} from '@storelink/protocols';
import type { Logger } from 'pino';
import { cloudError } from '../errors.ts';
import type { CloudMetrics } from '../metrics.ts';
import { connectServiceClient } from '../mqtt-client.ts';
import type { CloudStore, CommandRecord, NewCommand } from '../store/store.ts';

export interface SendCommandInput {
  gateway: string;
  type: string;
  /** `{ device }` routes the command through the gateway to one device. */
  target?: { device?: string };
  payload: unknown;
  /** Lifetime; default `commands.defaultTtlMs`. */
  ttlMs?: number;
  /** A caller-derived id (a ULID), so a re-issue is the same command (vend.dispense per order). */
  id?: string;
}

/** A signed command not yet stored or published (see `CommandService.prepare`). */
export interface PreparedCommand {
  topic: string;
  envelope: CommandEnvelope;
  row: NewCommand;
}

export interface CommandServiceOptions {
  broker: { url: string; username?: string; password?: string };
  clientId?: string;
  store: CloudStore;
  privateKey: KeyObject;
  defaultTtlMs: number;
  metrics: CloudMetrics;
  logger: Logger;
  now?: () => number;
  publishTimeoutMs?: number;
}

/** The longest lifetime a command may ask for. */
export const MAX_COMMAND_TTL_MS = 7 * 24 * 3600 * 1000;

/**
 * Commands: validated with the protocol's own checks, signed with the cloud's Ed25519
 * key over topic + body [CMD-SIG-1], stored, then published QoS1 (not retained: a
 * retained command would be replayed at every resubscribe). The result comes back as a
 * `command.result` event and completes the row in the ingest transaction.
 */
/** How commands leave: an MQTT client in production, a recorder in tests. */
export interface CommandTransport {
  publish(topic: string, payload: string): Promise<void>;
  readonly connected: boolean;
  close(): Promise<void>;
}

const GATEWAY_MEMORY_MS = 30_000;

export class CommandService {
  private readonly now: () => number;
  private readonly log: Logger;

  constructor(
    private readonly transport: CommandTransport,
    private readonly opts: Omit<CommandServiceOptions, 'broker' | 'clientId'>,
  ) {
    this.now = opts.now ?? Date.now;
    this.log = opts.logger.child({ component: 'commands' });
  }

  static async start(opts: CommandServiceOptions): Promise<CommandService> {
    const client = await connectServiceClient({
      url: opts.broker.url,
      ...(opts.broker.username !== undefined ? { username: opts.broker.username } : {}),
      ...(opts.broker.password !== undefined ? { password: opts.broker.password } : {}),
      clientId: opts.clientId ?? `${opts.broker.username ?? 'storelink-cloud'}-commands`,
      clean: true,
      logger: opts.logger,
    });
    const timeoutMs = opts.publishTimeoutMs ?? 5000;
    return new CommandService(
      {
        // QoS1, not retained: a retained command would be replayed at every resubscribe.
        publish: async (topic, payload) => {
          await withTimeout(client.publishAsync(topic, payload, { qos: 1, retain: false }), timeoutMs);
        },
        get connected() {
          return client.connected;
        },
        close: async () => {
          await client.endAsync();
        },
      },
      opts,
    );
  }

  /**
   * A gateway's site (for the topic), remembered for GATEWAY_MEMORY_MS: every command
   * needs it, and on a store with one connection (PGlite) each extra query waits behind
   * whatever else holds it — on the pay-to-dispense path that wait was the p99.
   */
  private readonly gateways = new Map<string, { gw: { id: string; site: string }; until: number }>();
  private async gatewayOf(id: string): Promise<{ id: string; site: string } | undefined> {
    const now = this.now();
    const known = this.gateways.get(id);
    if (known && known.until > now) return known.gw;
    const gw = await this.opts.store.getGateway(id);
    if (!gw) return undefined;
    if (this.gateways.size >= 10_000) this.gateways.clear();
    this.gateways.set(id, { gw: { id: gw.id, site: gw.site }, until: now + GATEWAY_MEMORY_MS });
    return gw;
  }

  async send(input: SendCommandInput): Promise<CommandRecord> {
    const gw = await this.gatewayOf(input.gateway);
    if (!gw) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: input.gateway });
    const prepared = this.prepare(input, gw.site);
    await this.opts.store.insertCommand(prepared.row);
    await this.publishPrepared(prepared);
    return (await this.opts.store.getCommand(prepared.envelope.id))!;
  }

  /**
   * Builds and signs a command for a gateway of `site` without storing it: the caller
   * stores `row` — in its own transaction, when the command is part of a change it
   * commits (a paid order and its dispense [CMD-TX-1]) — and then calls
   * `publishPrepared`. Stored first, so a result can never arrive for a command we do
   * not know.
   */
  prepare(input: SendCommandInput, site: string): PreparedCommand {
    const ttl = input.ttlMs ?? this.opts.defaultTtlMs;
    if (!Number.isInteger(ttl) || ttl < 1 || ttl > MAX_COMMAND_TTL_MS) {
      throw cloudError('CLOUD_ERR_BAD_REQUEST', {
        errors: `/ttlMs must be an integer from 1 to ${MAX_COMMAND_TTL_MS}`,
      });
    }
    const issuedAt = this.now();
    const unsigned: UnsignedCommand = {
      v: 1,
      id: input.id ?? newId(issuedAt),
      type: input.type,
      target: input.target?.device !== undefined ? { device: input.target.device } : {},
      issuedAt,
      expiresAt: issuedAt + ttl,
      payload: input.payload ?? {},
    };
    const ok = checkCommandBody(unsigned);
    if (!ok.ok) throw ok.error;
    const topic = gatewayTopic({ site, gateway: input.gateway }, 'cmd');
    const envelope = signCommand(this.opts.privateKey, topic, unsigned);
    return {
      topic,
      envelope,
      row: {
        id: envelope.id,
        gateway: input.gateway,
        site,
        device: envelope.target.device ?? null,
        type: envelope.type,
        payload: envelope.payload,
        issuedAt,
        expiresAt: envelope.expiresAt,
        sig: envelope.sig,
      },
    };
  }

  /** Publishes a prepared command whose row is committed, then marks it sent. */
  async publishPrepared(p: PreparedCommand): Promise<void> {
    const { store, metrics } = this.opts;
    const { envelope, topic } = p;
    if (!this.transport.connected) {
      throw cloudError('CLOUD_ERR_COMMAND_PUBLISH', {
        id: envelope.id,
        reason: 'not connected to the broker',
      });
    }
    try {
      await this.transport.publish(topic, JSON.stringify(envelope));
    } catch (e) {
      throw cloudError(
        'CLOUD_ERR_COMMAND_PUBLISH',
        { id: envelope.id, reason: (e as Error).message },
        { cause: e },
      );
    }
    await store.markCommandSent(envelope.id, this.now());
    metrics.commandsSent.inc({ type: envelope.type });
    this.log.info(
      {
        id: envelope.id,
        gateway: p.row.gateway,
        type: envelope.type,
        device: envelope.target.device,
        expiresAt: envelope.expiresAt,
      },
      `command ${envelope.type} sent to ${p.row.gateway}`,
    );
  }

  /**
   * Publishes again every command of `gateway` that has no result yet and has not
   * expired [CMD-REDELIVER-1]. A command published while the gateway was offline (or
   * before it first subscribed) is otherwise lost with its clean session; the stored
   * envelope is resent as signed, and the edge's ledger runs it at most once whatever
   * the number of copies [CMD-ONCE-1].
   */
  async redeliverOpen(gateway: string): Promise<number> {
    const now = this.now();
    const open = (await this.opts.store.listCommands({ gateway, limit: 500 })).filter(
      (c) => (c.status === 'pending' || c.status === 'sent') && c.expiresAt > now,
    );
    let sent = 0;
    for (const c of open.reverse()) {
      const envelope: CommandEnvelope = {
        v: 1,
        id: c.id,
        type: c.type,
        target: c.device !== null ? { device: c.device } : {},
        issuedAt: c.issuedAt,
        expiresAt: c.expiresAt,
        payload: c.payload,
        sig: c.sig,
      };
      try {
        await this.transport.publish(
          gatewayTopic({ site: c.site, gateway }, 'cmd'),
          JSON.stringify(envelope),
        );
        if (c.status === 'pending') await this.opts.store.markCommandSent(c.id, this.now());
        sent++;
      } catch (e) {
        this.log.warn({ id: c.id, gateway, err: (e as Error).message }, 'command redelivery failed');
      }
    }
    if (sent > 0) {
      this.opts.metrics.commandsRedelivered.inc(sent);
      this.log.info({ gateway, commands: sent }, `redelivered ${sent} open command(s) to ${gateway}`);
    }
    return sent;
  }

  get connected(): boolean {
    return this.transport.connected;
  }

  async close(): Promise<void> {
    await this.transport.close();
  }
}

function withTimeout<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no PUBACK within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}
