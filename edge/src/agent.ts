import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Lane, LANES, loadPublicKey, type UnsequencedEvent } from '@storelink/protocols';
import { type Logger, pino } from 'pino';
import { DeviceAuth } from './broker/auth.ts';
import {
  type Cabinet,
  type CabinetStatus,
  type OpenCabinetLine,
  startCabinet,
} from './cabinet/agent-wiring.ts';
import type { InventoryProvider } from './cabinet/inventory.ts';
import { type EdgeBroker, startEdgeBroker } from './broker/index.ts';
import { Presence } from './broker/presence.ts';
import { CommandRouter } from './commands/index.ts';
import { type EdgeConfig, type EdgeConfigInput, parseConfig, readPublicKeyPem } from './config.ts';
import { edgeError } from './errors.ts';
import { EslManager, startEslSweep } from './esl/index.ts';
import { heartbeat } from './heartbeat.ts';
import { build } from './http/index.ts';
import { edgeEvent } from './ingest/edge-events.ts';
import { EventIngest } from './ingest/event.ts';
import { EdgeMetrics } from './metrics.ts';
import { openEdgeStore, type StoreHealth } from './outbox/index.ts';
import type { EdgeStore, OutboxStats } from './outbox/types.ts';
import type { RfidInventory } from './rfid/api.ts';
import {
  registerRfidMetrics,
  type Rfid,
  type RfidBinding,
  type RfidStatus,
  startRfid,
} from './rfid/agent-wiring.ts';
import { startShadows } from './shadow/wiring.ts';
import { Uplink, type UplinkStatus } from './uplink/index.ts';
import {
  type OpenGpioLine,
  registerVmcMetrics,
  type SerialBinding,
  startVending,
  type Vending,
  type VendingStatus,
} from './vending/agent-wiring.ts';
import { startVision, type VisionService, type VisionStatus } from './vision/index.ts';

export const VERSION: string = (
  JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }
).version;

export interface StartEdgeOptions {
  /** Injected clock (house style 6). */
  now?: () => number;
  logger?: Logger;
  /** An already open store (tests); otherwise the agent opens `config.outbox.kind` under dataDir and owns it. */
  store?: EdgeStore;
  /** Jitter source for reconnect backoff. */
  random?: () => number;
  /** Serial binding for the vending port (tests: @serialport/binding-mock); default: the platform's. */
  binding?: SerialBinding;
  /** Opens the vending GPIO lines (tests: sim lines); default: onoff sysfs. */
  openGpioLine?: OpenGpioLine;
  /** Serial binding for the RFID reader port (tests: @serialport/binding-mock); default: the platform's. */
  rfidBinding?: RfidBinding;
  /** Opens the cabinet lock/door lines (tests: sim lines); default: onoff sysfs. */
  openCabinetLine?: OpenCabinetLine;
  /** The RFID reader the cabinet counts with (edge/src/rfid); none = no RFID inventory. */
  cabinetRfid?: RfidInventory;
  /** An extra cabinet inventory source (tests: the simulated cabinet's content). */
  cabinetInventory?: InventoryProvider;
}

/** Events the cloud acknowledged per second over the last 30 s, and the time to drain at that rate. */
export interface DrainFigures {
  drainPerSecond: number;
  etaSeconds: number | null;
}

export interface EdgeStatus {
  gateway: string;
  site: string;
  version: string;
  startedAt: number;
  uptimeS: number;
  devices: Array<{
    id: string;
    kind?: string;
    online: boolean;
    connections: number;
    lastSeen: number | null;
    events: number;
    rejected: number;
  }>;
  outbox: Omit<OutboxStats, 'lanes'> & {
    lanes: Record<Lane, OutboxStats['lanes'][Lane] & DrainFigures>;
  } & DrainFigures;
  uplink: UplinkStatus;
  recovery: EdgeStore['recovery'];
  /** LevelDB store: disk reserve, reopens after write errors [OUTBOX-DISK-1] [OUTBOX-DISK-2]. */
  store?: StoreHealth;
  /** Present when the config has a `vending` section. */
  vending?: VendingStatus;
  /** Present when the config has an `rfid` section (docs/rfid.md). */
  rfid?: RfidStatus;
  /** Present when the config has a `cabinet` section (docs/cabinet.md). */
  cabinet?: CabinetStatus;
  /** Present when the config has a `vision` section (docs/vision.md). */
  vision?: VisionStatus;
}

export interface EdgeAgent {
  brokerPort: number;
  wsPort: number | null;
  httpUrl: string;
  config: EdgeConfig;
  store: EdgeStore;
  metrics: EdgeMetrics;
  /** Electronic shelf labels and signage displays (docs/esl.md). */
  esl: EslManager;
  /** The vending machine controller, when configured (docs/architecture.md "Vending on the edge"). */
  vending: Vending | undefined;
  /** The RFID reader, when configured (docs/rfid.md); cabinets use `rfid.driver` (RfidInventory). */
  rfid: Rfid | undefined;
  /** The unmanned cabinet, when configured (docs/cabinet.md). */
  cabinet: Cabinet | undefined;
  /** On-device vision, when configured (docs/vision.md). */
  vision: VisionService | undefined;
  status(): EdgeStatus;
  close(): Promise<void>;
}

function openStore(config: EdgeConfig, now: () => number, logger: Logger): Promise<EdgeStore> {
  const o = config.outbox;
  return openEdgeStore({
    dir: config.dataDir,
    kind: o.kind,
    durability: o.durability,
    maxBytes: o.maxBytes,
    lanes: o.lanes,
    now,
    // [OUTBOX-DISK-1] unset: the computed default reserve; 0: no reserve.
    ...(o.diskReserveBytes === undefined
      ? {}
      : { disk: o.diskReserveBytes === 0 ? false : { reserveBytes: o.diskReserveBytes } }),
    onLog: (level, msg, data) => logger[level]({ component: 'outbox', ...data }, msg),
  });
}

/**
 * Starts the edge agent: local broker (TCP, optional WebSocket), device ingest into the
 * outbox, uplink to the cloud, command router, heartbeat and the local HTTP surface.
 */
export async function startEdge(
  input: EdgeConfig | EdgeConfigInput,
  opts: StartEdgeOptions = {},
): Promise<EdgeAgent> {
  const config = parseConfig(input, {});
  const now = opts.now ?? Date.now;
  const logger =
    opts.logger ??
    pino({ name: 'storelink-edge', level: config.log.level, base: { gateway: config.gateway } });
  const startedAt = now();
  const ctx = { site: config.site, gateway: config.gateway, now };

  let publicKey: KeyObject | undefined;
  const pem = readPublicKeyPem(config);
  if (pem) {
    try {
      publicKey = loadPublicKey(pem);
    } catch (e) {
      throw edgeError(
        'EDGE_ERR_CONFIG',
        { errors: `/cloud/publicKey: ${(e as Error).message}` },
        { cause: e },
      );
    }
  } else {
    logger.warn('no cloud command key configured: every command will be refused');
  }

  const ownsStore = !opts.store;
  const store = opts.store ?? (await openStore(config, now, logger));
  const { outbox, kv } = store;
  // What has been started so far, undone in reverse if start-up fails half way.
  const undo: Array<() => Promise<unknown>> = [];
  if (ownsStore) undo.push(() => store.close());
  const failed = async (e: unknown): Promise<never> => {
    for (const fn of undo.reverse()) await fn().catch(() => undefined);
    throw e;
  };
  if (store.recovery.lostCount > 0) {
    const e = edgeError('EDGE_ERR_OUTBOX_CORRUPT', {
      lostCount: store.recovery.lostCount,
      ranges: JSON.stringify(store.recovery.lost),
    });
    logger.error({ code: e.code, lost: store.recovery.lost }, e.message);
  }

  let presence: Presence;
  const metrics = new EdgeMetrics({ outbox: () => outbox, devicesOnline: () => presence.online().length });
  const kinds = new Map(config.devices.map((d) => [d.id, d.kind]));

  // Presence events are appended in the order they happen.
  let presenceChain: Promise<unknown> = Promise.resolve();
  // Set once the shadow agent exists: a device that connects gets its deferred shadow.
  let shadowDeviceOnline: (device: string) => void = () => undefined;
  const appendEdgeEvent = (ev: UnsequencedEvent) => {
    presenceChain = presenceChain
      .then(() => outbox.append(ev))
      .then(
        () => metrics.accepted.inc({ type: ev.type, lane: ev.lane }),
        (e: unknown) => logger.error({ type: ev.type, err: (e as Error).message }, 'edge event not stored'),
      );
  };
  presence = new Presence(now, (kind, device, reason, clientId) => {
    logger.info({ device, clientId, reason }, `device ${kind}`);
    if (kind === 'online') shadowDeviceOnline(device);
    appendEdgeEvent(
      edgeEvent(ctx, kind === 'online' ? 'device.online' : 'device.offline', device, {
        reason: reason as 'connected',
        clientId: clientId.slice(0, 128),
      }),
    );
  });

  let broker: EdgeBroker | undefined;
  // Declared before the broker starts: its event handler reads it [docs/cabinet.md].
  let cabinet: Cabinet | undefined;
  const reportToDevice: EdgeBroker['reportToDevice'] = (d, t, e) => broker?.reportToDevice(d, t, e);
  const ingest = new EventIngest({
    outbox,
    site: config.site,
    gateway: config.gateway,
    now,
    metrics,
    logger,
    reportToDevice,
    count: (d, what) => {
      presence.device(d)[what]++;
    },
  });
  const auth = new DeviceAuth(config.devices);
  const commands = new CommandRouter({
    publicKey,
    site: config.site,
    gateway: config.gateway,
    kv,
    outbox,
    now,
    metrics,
    logger,
    commandTimeoutMs: config.commandTimeoutMs,
    knownDevice: (id) => auth.has(id),
    sendToDevice: (topic, json) => broker!.publish(topic, json, 1),
    reportToDevice,
  });

  // Shadows (docs/fleet-shadows-rollouts.md): `shadow.delta` is a gateway command; device keys go to the device.
  const shadows = await startShadows({
    site: config.site,
    gateway: config.gateway,
    now,
    kv,
    logger,
    append: (ev) => outbox.append(ev).then(() => metrics.accepted.inc({ type: ev.type, lane: ev.lane })),
    publishToDevice: (topic, json) => broker!.publish(topic, json, 1),
    knownDevice: (id) => auth.has(id),
    deviceOnline: (id) => presence.device(id).online,
    commands,
    deviceTimeoutMs: config.commandTimeoutMs,
    count: (target, status) => metrics.shadowApplies.inc({ target, status }),
    onBadResult: (d, topic, e) => {
      metrics.rejected.inc({ code: e.code });
      reportToDevice(d, topic, e);
    },
  }).catch(failed);
  shadowDeviceOnline = (device) => shadows.deviceOnline(device);

  // ESL (docs/esl.md): AP and display events go to the ESL manager, campaigns are gateway commands.
  const esl = new EslManager({
    site: config.site,
    gateway: config.gateway,
    now,
    logger: logger.child({ component: 'esl' }),
    registry: metrics.registry,
    publish: (topic, payload, retain) => broker!.publish(topic, payload, 1, retain),
    append: (ev) => outbox.append(ev).then(() => undefined),
    kv,
    onRefused: (d, topic, e) => {
      metrics.rejected.inc({ code: e.code });
      reportToDevice(d, topic, e);
    },
  });
  await esl.load();
  const stopEslSweep = startEslSweep(esl, commands);

  broker = await startEdgeBroker({
    host: config.broker.host,
    port: config.broker.port,
    wsPort: config.broker.wsPort,
    auth,
    presence,
    metrics,
    logger,
    handlers: {
      event: (d, type, topic, payload, done) => {
        if (type === 'vision.frame' && vision) {
          // [VISION-PRIVACY-2] a frame goes to the vision worker only: never stored nor uplinked.
          vision.frame(d, payload);
          return done(null);
        }
        if (cabinet?.handles(type)) return cabinet.deviceEvent(d, type, payload, done);
        return esl.handles(type)
          ? esl.deviceEvent(d, type, payload, done)
          : ingest.handle(d, type, topic, payload, done);
      },
      result: (d, id, payload, done) =>
        shadows.deviceResult(d, id, payload, done) || commands.deviceResult(d, id, payload, done),
    },
  }).catch(failed);
  const startedBroker = broker;
  undo.push(() => startedBroker.close());

  let vending: Vending | undefined;
  if (config.vending) {
    vending = await startVending({
      config: config.vending,
      site: config.site,
      gateway: config.gateway,
      now,
      logger,
      ledger: kv,
      append: (ev) => outbox.append(ev).then(() => metrics.accepted.inc({ type: ev.type, lane: ev.lane })),
      commands,
      metrics: registerVmcMetrics(metrics.registry),
      ...(opts.binding ? { binding: opts.binding } : {}),
      ...(opts.openGpioLine ? { openGpioLine: opts.openGpioLine } : {}),
    }).catch(failed);
    const started = vending;
    undo.push(() => started.stop());
  }

  let rfidReader: Rfid | undefined;
  if (config.rfid) {
    rfidReader = await startRfid({
      config: config.rfid,
      site: config.site,
      gateway: config.gateway,
      now,
      logger,
      append: (ev) => outbox.append(ev).then(() => metrics.accepted.inc({ type: ev.type, lane: ev.lane })),
      metrics: registerRfidMetrics(metrics.registry),
      ...(opts.rfidBinding ? { binding: opts.rfidBinding } : {}),
    }).catch(failed);
    const started = rfidReader;
    undo.push(() => started.stop());
  }

  let vision: VisionService | undefined;
  if (config.vision) {
    vision = (
      await startVision({
        config: config.vision,
        gateway: config.gateway,
        kv,
        now,
        logger,
        registry: metrics.registry,
        commands,
        // Through the normal ingest under the camera's device id (schema checks, outbox, PUBACK-free).
        emit: (camera, type, payload) =>
          new Promise((resolve, reject) =>
            ingest.handle(
              camera,
              type,
              `dev/${camera}/evt/${type}`,
              Buffer.from(JSON.stringify(payload)),
              (e) => (e ? reject(e) : resolve()),
            ),
          ),
      }).catch(failed)
    ).service;
    const started = vision;
    undo.push(() => started.close());
  }

  if (config.cabinet) {
    cabinet = await startCabinet({
      config: config.cabinet,
      site: config.site,
      gateway: config.gateway,
      now,
      logger,
      kv,
      append: (ev) => outbox.append(ev).then(() => metrics.accepted.inc({ type: ev.type, lane: ev.lane })),
      commands,
      registry: metrics.registry,
      ...(opts.openCabinetLine ? { openLine: opts.openCabinetLine } : {}),
      // The configured RFID reader (config.rfid) counts the cabinet unless a test injects one.
      ...((opts.cabinetRfid ?? rfidReader) ? { rfid: opts.cabinetRfid ?? rfidReader!.driver } : {}),
      ...(opts.cabinetInventory ? { inventory: opts.cabinetInventory } : {}),
    }).catch(failed);
    const started = cabinet;
    undo.push(() => started.stop());
  }

  await commands.start().catch(failed);
  undo.push(() => commands.close());
  const uplink = new Uplink({
    cloud: config.cloud,
    site: config.site,
    gateway: config.gateway,
    outbox,
    kv,
    now,
    metrics,
    logger,
    version: VERSION,
    random: opts.random,
    onCommand: (topic, payload) => {
      commands.handle(topic, payload).catch((e: unknown) => {
        logger.error({ err: (e as Error).message }, 'command handling failed');
      });
    },
  });
  undo.push(() => uplink.close());
  await uplink.start().catch(failed);

  const hb = setInterval(() => {
    if (!uplink.isConnected) return;
    const body = heartbeat({
      site: config.site,
      gateway: config.gateway,
      now: now(),
      startedAt,
      bdSeq: uplink.currentBdSeq,
      devicesOnline: presence.online(),
      outbox,
      ...(vision
        ? {
            vision: {
              galleryVersion: vision.status().galleryVersion,
              gallerySize: vision.status().gallerySize,
            },
          }
        : {}),
    });
    uplink.publishHeartbeat(JSON.stringify(body));
  }, config.heartbeatMs);
  hb.unref();

  const status = (): EdgeStatus => {
    const st = outbox.stats();
    const rate = uplink.sender.rate;
    const devices = config.devices.map((d) => {
      const i = presence.device(d.id);
      const out: EdgeStatus['devices'][number] = {
        id: d.id,
        online: i.online,
        connections: i.connections,
        lastSeen: i.lastSeen ?? null,
        events: i.events,
        rejected: i.rejected,
      };
      const kind = kinds.get(d.id);
      if (kind) out.kind = kind;
      return out;
    });
    return {
      gateway: config.gateway,
      site: config.site,
      version: VERSION,
      startedAt,
      uptimeS: (now() - startedAt) / 1000,
      devices,
      outbox: {
        ...st,
        lanes: Object.fromEntries(
          LANES.map((lane) => {
            const r = uplink.sender.laneRates[lane];
            const l = st.lanes[lane];
            return [lane, { ...l, drainPerSecond: r.perSecond(), etaSeconds: r.etaSeconds(l.depth) }];
          }),
        ) as EdgeStatus['outbox']['lanes'],
        drainPerSecond: rate.perSecond(),
        etaSeconds: rate.etaSeconds(st.depth),
      },
      uplink: uplink.status(),
      recovery: store.recovery,
      ...('health' in store ? { store: (store as { health(): StoreHealth }).health() } : {}),
      ...(vending ? { vending: vending.status() } : {}),
      ...(rfidReader ? { rfid: rfidReader.status() } : {}),
      ...(cabinet ? { cabinet: cabinet.status() } : {}),
      ...(vision ? { vision: vision.status() } : {}),
    };
  };

  let storeOpen = true;
  const app = build({
    registry: metrics.registry,
    status,
    ready: () => {
      const checks = { broker: broker!.listening(), store: storeOpen, cloud: uplink.isConnected };
      return { ready: checks.broker && checks.store, checks };
    },
  });
  undo.push(async () => clearInterval(hb));
  const httpUrl = await app.listen({ host: config.http.host, port: config.http.port }).catch(failed);
  logger.info(
    { broker: broker.port, ws: broker.wsPort, http: httpUrl, lanes: LANES, epoch: outbox.epoch },
    'edge agent started',
  );

  let closing: Promise<void> | null = null;
  const close = () => {
    closing ??= (async () => {
      clearInterval(hb);
      stopEslSweep();
      // 1. stop accepting connections, 2. let appends in flight finish (their devices
      // get their PUBACK), 3. close device connections, recording why they went offline.
      void broker!.stopListening();
      await ingest.stop();
      presence.markAll('agent_restart');
      await broker!.close();
      await presenceChain;
      shadows.close();
      await commands.close();
      await vending?.stop();
      await rfidReader?.stop();
      await cabinet?.stop();
      await vision?.close();
      // The cloud learns we left: offline state with this session's bdSeq.
      await uplink.close();
      await app.close();
      storeOpen = false;
      if (ownsStore) await store.close();
      logger.info('edge agent stopped');
    })();
    return closing;
  };

  return {
    brokerPort: broker.port,
    wsPort: broker.wsPort,
    httpUrl,
    config,
    store,
    metrics,
    esl,
    vending,
    rfid: rfidReader,
    cabinet,
    vision,
    status,
    close,
  };
}
