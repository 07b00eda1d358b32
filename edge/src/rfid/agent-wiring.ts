import { checkEventPayload, eventTypeSpec, newId, rfid, type UnsequencedEvent } from '@storelink/protocols';
import type { Logger } from 'pino';
import { Gauge, type Registry } from 'prom-client';
import type { EdgeConfig } from '../config.ts';
import { counterMirror } from '../metrics.ts';
import type { InventoryRound } from './api.ts';
import { type RfidCounters, RfidDriver, type RfidDriverOptions } from './driver.ts';

/**
 * RFID on the edge agent: when the config has an `rfid` section the agent owns one
 * RfidDriver and reports its smoothed presence changes as `tag.arrived` / `tag.departed`
 * and its faults as `rfid.alarm`, all on the event lane through the outbox. Other edge
 * parts (cabinet sessions) use `driver` through the RfidInventory API (api.ts).
 * See docs/rfid.md.
 */

export type RfidConfig = NonNullable<EdgeConfig['rfid']>;
export type RfidBinding = NonNullable<RfidDriverOptions['binding']>;

export interface RfidStatus {
  name: string;
  path: string;
  framing: string;
  link: { up: boolean; since: number | null; reason?: string };
  present: number;
  faults: Array<{ antenna: number; code: string }>;
  lastRound: { at: number; tags: number; complete: boolean; durationMs: number } | null;
  counters: RfidCounters;
}

export interface Rfid {
  readonly driver: RfidDriver;
  status(): RfidStatus;
  stop(): Promise<void>;
}

export interface RfidMetrics {
  attach(driver: RfidDriver | undefined): void;
}

/**
 * `storelink_edge_rfid_*` on the agent's registry; counters mirror the driver's own at
 * scrape time (the driver counts; nothing is counted twice).
 */
export function registerRfidMetrics(registry: Registry): RfidMetrics {
  let driver: RfidDriver | undefined;
  const registers = [registry];
  const mirror = counterMirror(registry, () => driver?.counters);
  mirror('storelink_edge_rfid_frames_total', 'RFID reader serial frames, by direction', ['dir'], (c) => [
    [{ dir: 'in' }, c.framesIn],
    [{ dir: 'out' }, c.framesOut],
  ]);
  mirror(
    'storelink_edge_rfid_parse_errors_total',
    'bytes from the RFID reader that were not a valid frame, by error code',
    ['code'],
    (c) => Object.entries(c.parseErrors).map(([code, v]) => [{ code }, v]),
  );
  mirror(
    'storelink_edge_rfid_antenna_attempts_total',
    'antenna inventory attempts, by outcome (ok, no_tag, antenna_missing, timeout, corrupt, reader_error, link_down)',
    ['outcome'],
    (c) => Object.entries(c.attempts).map(([outcome, v]) => [{ outcome }, v]),
  );
  mirror(
    'storelink_edge_rfid_events_total',
    'RFID driver events: rounds, retries, raw tag reads, arrivals, departures, stale frames, port opens/losses, link downs',
    ['kind'],
    (c) => [
      [{ kind: 'round' }, c.rounds],
      [{ kind: 'retry' }, c.retries],
      [{ kind: 'read' }, c.reads],
      [{ kind: 'arrival' }, c.arrivals],
      [{ kind: 'departure' }, c.departures],
      [{ kind: 'stale_frame' }, c.staleFrames],
      [{ kind: 'port_open' }, c.portOpens],
      [{ kind: 'port_loss' }, c.portLosses],
      [{ kind: 'link_down' }, c.linkDowns],
    ],
  );
  new Gauge({
    name: 'storelink_edge_rfid_tags_present',
    help: 'tags in the RFID driver smoothed presence view',
    registers,
    collect() {
      this.set(driver ? driver.present().size : 0);
    },
  });
  new Gauge({
    name: 'storelink_edge_rfid_link_up',
    help: '1 while the RFID reader answers on its serial port',
    registers,
    collect() {
      this.set(driver?.isLinkUp ? 1 : 0);
    },
  });
  new Gauge({
    name: 'storelink_edge_rfid_antenna_faults',
    help: 'RFID antennas currently in fault (missing, timing out, corrupt answers)',
    registers,
    collect() {
      this.set(driver ? driver.activeFaults.size : 0);
    },
  });
  return {
    attach(d) {
      driver = d;
    },
  };
}

export interface StartRfidOptions {
  config: RfidConfig;
  site: string;
  gateway: string;
  now: () => number;
  logger: Logger;
  append: (ev: UnsequencedEvent) => Promise<unknown>;
  metrics: RfidMetrics;
  binding?: RfidBinding;
}

/** Starts the driver (it opens the port in the background, reopens with backoff) and reports its events. */
export async function startRfid(o: StartRfidOptions): Promise<Rfid> {
  const { config: cfg, now } = o;
  const log = o.logger.child({ component: 'rfid', reader: cfg.name });
  const driver = new RfidDriver({
    path: cfg.serialPath,
    framing: cfg.framing,
    name: cfg.name,
    antennas: cfg.antennas,
    roundIntervalMs: cfg.roundIntervalMs,
    departRounds: cfg.departRounds,
    departMs: cfg.departMs,
    dedupeMs: cfg.dedupeMs,
    retries: cfg.retries,
    now,
    ...(cfg.baudRate !== undefined ? { baudRate: cfg.baudRate } : {}),
    ...(cfg.addr !== undefined ? { addr: cfg.addr } : {}),
    ...(cfg.scanTime !== undefined ? { scanTime: cfg.scanTime } : {}),
    ...(cfg.responseTimeoutMs !== undefined ? { responseTimeoutMs: cfg.responseTimeoutMs } : {}),
    ...(cfg.reopenMinMs !== undefined ? { reopenMinMs: cfg.reopenMinMs } : {}),
    ...(cfg.reopenMaxMs !== undefined ? { reopenMaxMs: cfg.reopenMaxMs } : {}),
    ...(o.binding ? { binding: o.binding } : {}),
    log: { warn: (obj, msg) => log.warn(obj, msg), info: (obj, msg) => log.info(obj, msg) },
  });

  // Events are appended in the order the driver reported them.
  let chain: Promise<unknown> = Promise.resolve();
  const emit = (type: string, payload: unknown): void => {
    const checked = checkEventPayload(type, payload);
    if (!checked.ok) {
      log.error({ type, err: checked.error.message }, 'rfid event does not match its schema; not sent');
      return;
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
      .catch((e: unknown) => log.error({ type, err: (e as Error).message }, 'rfid event not stored'));
  };

  const reader = cfg.name;
  driver.on('tag.arrived', (a) => emit(rfid.TAG_ARRIVED, { reader, ...a } satisfies rfid.TagArrivedEvent));
  driver.on('tag.departed', (d) => emit(rfid.TAG_DEPARTED, { reader, ...d } satisfies rfid.TagDepartedEvent));
  driver.on('fault', (f) =>
    emit(rfid.RFID_ALARM, {
      reader,
      code: f.code,
      active: f.active,
      message: f.message.slice(0, 512),
      ...(f.antenna !== undefined ? { antenna: f.antenna } : {}),
    } satisfies rfid.RfidAlarm),
  );

  const link: RfidStatus['link'] = { up: false, since: null };
  let reportedLink: boolean | undefined;
  driver.on('link', ({ up, reason }) => {
    link.up = up;
    link.since = now();
    if (reason) link.reason = reason;
    else delete link.reason;
    // The driver says "down" on every failed reopen; report changes only (first up is not news).
    if (reportedLink === up || (reportedLink === undefined && up)) {
      reportedLink = up;
      return;
    }
    reportedLink = up;
    log[up ? 'info' : 'warn']({ up, reason }, 'rfid reader link');
    emit(rfid.RFID_ALARM, {
      reader,
      code: 'EDGE_ERR_RFID_LINK_DOWN',
      active: !up,
      ...(reason ? { message: reason.slice(0, 512) } : {}),
    } satisfies rfid.RfidAlarm);
  });
  let lastRound: InventoryRound | null = null;
  driver.on('round', (r) => {
    lastRound = r;
  });
  o.metrics.attach(driver);
  await driver.start();
  log.info({ path: cfg.serialPath, framing: cfg.framing, antennas: cfg.antennas }, 'rfid driver started');

  return {
    driver,
    status: () => ({
      name: cfg.name,
      path: cfg.serialPath,
      framing: cfg.framing,
      link: { ...link },
      present: driver.present().size,
      faults: [...driver.activeFaults].map(([antenna, code]) => ({ antenna, code })),
      lastRound: lastRound
        ? {
            at: lastRound.finishedAt,
            tags: lastRound.tags.size,
            complete: lastRound.complete,
            durationMs: lastRound.finishedAt - lastRound.startedAt,
          }
        : null,
      counters: structuredClone(driver.counters),
    }),
    async stop() {
      await driver.stop();
      o.metrics.attach(undefined);
      await chain;
    },
  };
}
