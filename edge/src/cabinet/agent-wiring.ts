import type { Static } from '@sinclair/typebox';
import {
  type CommandEnvelope,
  cabinet as cab,
  checkEventPayload,
  eventTypeSpec,
  newId,
  parseJsonPayload,
  type UnsequencedEvent,
} from '@storelink/protocols';
import type { Logger } from 'pino';
import { Counter, type Registry } from 'prom-client';
import { refuseCommand } from '../commands/index.ts';
import { edgeError } from '../errors.ts';
import { debounceLine, realTimers, type Timers } from '../gpio/debounce.ts';
import type { Line } from '../gpio/line.ts';
import { createOnoffLine } from '../gpio/onoff.ts';
import type { Done } from '../ingest/event.ts';
import type { KvStore } from '../outbox/types.ts';
import { WeightShelf } from '../weight/shelf.ts';
import type { CabinetConfigSchema } from './config.ts';
import {
  combinedInventory,
  type InventoryProvider,
  MemoryInventory,
  type RfidReaderLike,
  rfidInventory,
  weightInventory,
} from './inventory.ts';
import { CabinetBusyError, CabinetDoorOpenError, CabinetSession, type SessionRecord } from './session.ts';

/**
 * The cabinet on the edge agent (docs/cabinet.md): when the config has a `cabinet`
 * section the agent opens the lock relay and the (debounced) door switch, builds the
 * inventory from RFID and/or weight shelves, runs `cabinet.unlock` through one
 * CabinetSession (the command router gives once-per-command-id, the session ledger
 * once-per-session [CAB-ONCE-1]) and appends session events to the tx lane. Weight shelf
 * readings arrive as `shelf.reading` device events (`{lane, raw}`; not stored, only the
 * resulting `shelf.take`/`shelf.return` are).
 */
export type CabinetConfig = Static<typeof CabinetConfigSchema>;
type GpioSpec = CabinetConfig['lockGpio'];
export type OpenCabinetLine = (
  spec: GpioSpec,
  direction: 'in' | 'out',
  edge: 'none' | 'both',
) => Promise<Line>;

export const SHELF_READING = 'shelf.reading';

export interface CabinetStatus {
  session: { id: string; state: string; memberId?: string } | null;
  counters: CabinetSession['counters'];
  sources: string[];
  shelves: Array<{ id: string; counters: WeightShelf['counters'] }>;
}

export interface Cabinet {
  readonly session: CabinetSession;
  /** Present with `memoryInventory: true` (tests, demos). */
  readonly memory: MemoryInventory | undefined;
  readonly shelves: WeightShelf[];
  handles(type: string): boolean;
  deviceEvent(device: string, type: string, payload: Buffer, done: Done): void;
  status(): CabinetStatus;
  stop(): Promise<void>;
}

export interface StartCabinetOptions {
  config: CabinetConfig;
  site: string;
  gateway: string;
  now: () => number;
  logger: Logger;
  kv: Pick<KvStore, 'get' | 'put'>;
  append: (ev: UnsequencedEvent) => Promise<unknown>;
  commands: { registerExecutor(type: string, fn: (cmd: CommandEnvelope) => Promise<unknown>): void };
  registry?: Registry;
  openLine?: OpenCabinetLine;
  /** The RFID reader (edge/src/rfid RfidDriver, or anything answering `inventoryNow`). */
  rfid?: RfidReaderLike;
  /** An extra inventory source (tests: the simulated cabinet's content, which outlives agent restarts). */
  inventory?: InventoryProvider;
  timers?: Timers;
}

/** `storelink_edge_cabinet_*` (scripts/ops-doc.ts can list them from here). */
export function registerCabinetMetrics(registry?: Registry) {
  const registers = registry ? [registry] : [];
  return {
    events: new Counter({
      name: 'storelink_edge_cabinet_events_total',
      help: 'cabinet session and shelf events appended, by type',
      labelNames: ['type'],
      registers,
    }),
    refused: new Counter({
      name: 'storelink_edge_cabinet_refused_total',
      help: 'cabinet unlocks refused (busy, door open) and shelf readings refused (malformed, unknown shelf), by code',
      labelNames: ['code'],
      registers,
    }),
  };
}

const defaultOpenLine: OpenCabinetLine = (spec, direction, edge) =>
  createOnoffLine(spec.pin, direction, edge, {
    ...(spec.base !== undefined ? { base: spec.base } : {}),
    ...(spec.activeLow !== undefined ? { activeLow: spec.activeLow } : {}),
  });

export async function startCabinet(o: StartCabinetOptions): Promise<Cabinet> {
  const { config: cfg, now } = o;
  const log = o.logger.child({ component: 'cabinet' });
  const open = o.openLine ?? defaultOpenLine;
  const timers = o.timers ?? realTimers;
  const lines: Line[] = [];
  let lock: Line;
  let doorRaw: Line;
  try {
    lock = await open(cfg.lockGpio, 'out', 'none');
    lines.push(lock);
    doorRaw = await open(cfg.doorGpio, 'in', 'both');
    lines.push(doorRaw);
  } catch (e) {
    for (const l of lines) await l.close().catch(() => undefined);
    throw edgeError('EDGE_ERR_CONFIG', { errors: `/cabinet GPIO: ${(e as Error).message}` }, { cause: e });
  }
  // A reed switch bounces: one door event per real open/close [GPIO-DEBOUNCE-1].
  const door = cfg.doorDebounceMs > 0 ? debounceLine(doorRaw, cfg.doorDebounceMs, timers) : doorRaw;

  const { events: counter, refused } = registerCabinetMetrics(o.registry);

  let chain: Promise<unknown> = Promise.resolve();
  const emit = (type: string, payload: unknown): Promise<unknown> => {
    const checked = checkEventPayload(type, payload);
    if (!checked.ok) {
      log.error({ type, err: checked.error.message }, 'cabinet event does not match its schema; not sent');
      return chain;
    }
    const t = now();
    const ev: UnsequencedEvent = {
      id: newId(t),
      type,
      device: o.gateway,
      gateway: o.gateway,
      site: o.site,
      ts: t,
      rts: t,
      lane: eventTypeSpec(type)!.lane,
      payload,
    };
    // Session events must be in the outbox before the step that produced them is done.
    chain = chain.then(() => o.append(ev)).then(() => counter.inc({ type }));
    const mine = chain;
    chain = chain.catch((e: unknown) =>
      log.error({ type, err: (e as Error).message }, 'cabinet event not stored'),
    );
    return mine;
  };

  const parts: InventoryProvider[] = [];
  const memory = cfg.memoryInventory ? new MemoryInventory() : undefined;
  if (memory) parts.push(memory);
  if (o.inventory) parts.push(o.inventory);
  if (cfg.rfid) {
    if (!o.rfid)
      log.error('cabinet.rfid is configured but no RFID reader is running; RFID inventory disabled');
    else {
      const tags = new Map(Object.entries(cfg.rfid.tags).map(([k, v]) => [k.toLowerCase(), v]));
      parts.push(
        rfidInventory(o.rfid, {
          skuOf: (epc) => tags.get(epc.toLowerCase()),
          rounds: cfg.rfid.rounds,
          extraRounds: cfg.rfid.extraRounds,
        }),
      );
    }
  }
  const shelves = (cfg.shelves ?? []).map((s) => new WeightShelf(s.id, s.lanes));
  if (shelves.length > 0) parts.push(weightInventory(shelves, { settleMs: cfg.weightSettleMs, now }));
  if (parts.length === 0) log.error('cabinet has no inventory source: every session will charge nothing');

  const session = new CabinetSession({
    lock,
    door,
    doorRaw,
    inventory: combinedInventory(parts),
    ledger: o.kv,
    emit,
    now,
    timers,
    openTimeoutMs: cfg.openTimeoutMs,
    alarmAfterMs: cfg.alarmAfterMs,
    log: { info: (x, m) => log.info(x, m), warn: (x, m) => log.warn(x, m) },
  });

  for (const shelf of shelves) {
    shelf.onEvent((e) => {
      const cur = session.current;
      const payload: cab.ShelfChange = {
        shelf: e.shelf,
        lane: e.lane,
        at: e.at,
        deltaGrams: e.deltaGrams,
        ...(e.classification.kind === 'match'
          ? { sku: e.classification.sku, count: e.classification.count }
          : {}),
        ...(e.classification.kind === 'ambiguous'
          ? { ambiguous: e.classification.candidates.slice(0, 16) }
          : {}),
        ...(cur && cur.state !== 'closed' ? { sessionId: cur.id } : {}),
      };
      void emit(e.kind === 'take' ? cab.SHELF_TAKE : cab.SHELF_RETURN, payload).catch(() => undefined);
    });
  }

  o.commands.registerExecutor(cab.CABINET_UNLOCK, async (cmd) => {
    const p = cmd.payload as cab.CabinetUnlock;
    try {
      return await session.unlock(p);
    } catch (e) {
      if (e instanceof CabinetBusyError) {
        refused.inc({ code: 'EDGE_ERR_CAB_BUSY' });
        throw refuseCommand(edgeError('EDGE_ERR_CAB_BUSY', { running: e.running, requested: e.requested }));
      }
      if (e instanceof CabinetDoorOpenError) {
        refused.inc({ code: 'EDGE_ERR_CAB_DOOR_OPEN' });
        throw refuseCommand(edgeError('EDGE_ERR_CAB_DOOR_OPEN', { requested: p.sessionId }));
      }
      throw e;
    }
  });

  await session.start();
  log.info({ sources: parts.length, shelves: shelves.length }, 'cabinet started');

  const shelfById = new Map(shelves.map((s) => [s.id, s]));
  return {
    session,
    memory,
    shelves,
    handles: (type) => type === SHELF_READING,
    deviceEvent(device, _type, payload, done) {
      // High-rate raw readings: filtered here, never stored; a bad one is counted and dropped.
      const parsed = parseJsonPayload(payload, 16 * 1024);
      const shelf = shelfById.get(device);
      const v = parsed.ok ? (parsed.value as { lane?: unknown; raw?: unknown; ts?: unknown }) : undefined;
      const raws = v && (Array.isArray(v.raw) ? v.raw : [v.raw]);
      const reason = !shelf
        ? 'not a shelf in cabinet.shelves'
        : !v
          ? 'not JSON'
          : typeof v.lane !== 'string' || !shelf.lanes.has(v.lane)
            ? 'unknown lane'
            : !raws!.every((r) => typeof r === 'number' && Number.isFinite(r))
              ? 'raw must be a number or an array of numbers'
              : undefined;
      if (reason) {
        const e = edgeError('EDGE_ERR_CAB_SHELF_READING', { device, reason });
        refused.inc({ code: e.code });
        log.debug({ code: e.code, device }, e.message);
        done(null);
        return;
      }
      for (const r of raws as number[]) shelf!.feed(v!.lane as string, r, now());
      done(null);
    },
    status: () => {
      const cur: Readonly<SessionRecord> | undefined = session.current;
      return {
        session: cur
          ? { id: cur.id, state: cur.state, ...(cur.memberId ? { memberId: cur.memberId } : {}) }
          : null,
        counters: { ...session.counters },
        sources: [
          ...(memory ? ['memory'] : []),
          ...(cfg.rfid && o.rfid ? ['rfid'] : []),
          ...(shelves.length ? ['weight'] : []),
        ],
        shelves: shelves.map((s) => ({ id: s.id, counters: { ...s.counters } })),
      };
    },
    async stop() {
      await session.stop();
      await chain;
      for (const l of lines.splice(0)) await l.close().catch(() => undefined);
    },
  };
}
