import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { generateSigningKeys } from '@storelink/protocols';
import { type Mosquitto, startMosquitto } from './mosquitto.ts';
import { freePorts, sleep, waitForPort } from './ports.ts';
import { waitFor } from './wait.ts';

export { waitFor };
import { Proc } from './proc.ts';
import { tempDir } from './tmp.ts';
import type { StoredRow } from './verify.ts';

export const ROOT = resolve(import.meta.dirname, '../..');
export const EDGE_BIN = join(ROOT, 'edge/bin/storelink-edge.js');
export const CLOUD_BIN = join(ROOT, 'cloud/bin/storelink-cloud.js');

export interface StackDevice {
  id: string;
  password: string;
  type?: 'telemetry' | 'device.alarm';
}

export interface StackOptions {
  /** `mosquitto`: the Debian broker as cloud broker (external mode); `embedded`: the cloud's own aedes. */
  cloudBroker: 'mosquitto' | 'embedded';
  devices: StackDevice[];
  durability?: 'process' | 'power';
  /** Edge data dir (e.g. on a small tmpfs for the disk-full test). */
  edgeDataDir?: string;
  /** Extra edge config merged over the defaults (shallow per top-level key). */
  edge?: Record<string, unknown>;
  /** Extra edge outbox config merged over the defaults. */
  outbox?: Record<string, unknown>;
  /** Edge entry file (default the tsx bin); `buildEdgeBundle()` gives a fast-starting one. */
  edgeBin?: string;
  /** Start the edge now (default true). */
  startEdge?: boolean;
  /** Start the cloud now (default true). */
  startCloud?: boolean;
  logLevel?: string;
  /** The cloud store; default PGlite in the stack dir. */
  store?: { kind: 'pglite'; dir: string } | { kind: 'postgres'; url: string };
}

export interface Stack {
  dir: string;
  site: string;
  gateway: string;
  devices: StackDevice[];
  mosquitto: Mosquitto | undefined;
  cloud: Proc;
  edge: Proc;
  cloudHttp: string;
  edgeHttp: string;
  edgeBrokerUrl: string;
  edgeBrokerPort: number;
  edgeDataDir: string;
  edgeConfigFile: string;
  cloudConfigFile: string;
  service: { username: string; password: string };
  privateKeyPem: string;
  publicKeyPem: string;
  /** Every stored event of the gateway, all epochs and lanes, in seq order per lane. */
  cloudEvents(lanes?: string[]): Promise<StoredRow[]>;
  cloudCounts(): Promise<unknown>;
  cloudApi(path: string, init?: RequestInit): Promise<Response>;
  edgeStatus(): Promise<EdgeStatusLike>;
  close(): Promise<void>;
}

/** The parts of the edge's /status the harnesses read. */
export interface EdgeStatusLike {
  outbox: {
    epoch: string;
    depth: number;
    bytes: number;
    lanes: Record<
      string,
      {
        depth: number;
        nextSeq: number;
        ackedSeq: number;
        dropped: number;
        dropReasons?: Record<string, number>;
      }
    >;
  };
  recovery: {
    repaired: boolean;
    lost: Record<string, Array<[number, number]>>;
    lostCount: number;
    message: string;
  };
  uplink?: unknown;
}

export function makeDevices(
  n: number,
  type: StackDevice['type'] = 'telemetry',
  prefix = 'dev',
): StackDevice[] {
  return Array.from({ length: n }, (_, i) => ({ id: `${prefix}${i}`, password: `pw-${prefix}${i}`, type }));
}

function nodeArgsFromEnv(name: string): string[] {
  const raw = process.env[`STORELINK_NODE_ARGS_${name.toUpperCase()}`] ?? '';
  return raw.split(' ').filter(Boolean);
}

/** Spawns `node <bin> --config <file>` under supervision. */
export function nodeProc(
  name: string,
  bin: string,
  configFile: string,
  logFile: string,
  readyUrl?: string,
): Proc {
  return new Proc({
    name,
    command: process.execPath,
    // STORELINK_NODE_ARGS: extra node flags for the spawned process (e.g. `--cpu-prof`
    // for profiling a benchmark target); NODE_OPTIONS refuses some of them.
    args: [...nodeArgsFromEnv(name), bin, '--config', configFile],
    cwd: ROOT,
    logFile,
    readyUrl,
    readyTimeoutMs: 60_000,
  });
}

/**
 * A full stack as separate processes: (Mosquitto) + cloud + edge, configs written to a
 * temp dir, the gateway registered in the cloud config and (for Mosquitto) in the
 * broker's password file and ACL.
 */
export async function startStack(opts: StackOptions): Promise<Stack> {
  const dir = tempDir('storelink-stack-');
  const site = 'site1';
  const gateway = 'gw1';
  const gwPassword = 'gw1-secret';
  const service = { username: 'storelink-cloud', password: 'svc-secret' };
  const [cloudHttpPort, cloudBrokerPort, edgeBrokerPort, edgeHttpPort] = await freePorts(4);
  const keys = generateSigningKeys();
  writeFileSync(join(dir, 'signing.key'), keys.privateKeyPem, { mode: 0o600 });
  writeFileSync(join(dir, 'signing.pub'), keys.publicKeyPem);
  const logLevel = opts.logLevel ?? process.env.STORELINK_LOG ?? 'warn';

  let mosquitto: Mosquitto | undefined;
  let cloudBrokerUrl: string;
  let broker: Record<string, unknown>;
  if (opts.cloudBroker === 'mosquitto') {
    mosquitto = await startMosquitto({
      users: { [service.username]: service.password, [gateway]: gwPassword },
      acl: { superusers: [service.username] },
    });
    cloudBrokerUrl = mosquitto.url;
    broker = { mode: 'external', url: mosquitto.url, username: service.username, password: service.password };
  } else {
    cloudBrokerUrl = `mqtt://127.0.0.1:${cloudBrokerPort}`;
    broker = { mode: 'embedded', host: '127.0.0.1', port: cloudBrokerPort };
  }

  const cloudDir = join(dir, 'cloud');
  mkdirSync(cloudDir);
  const cloudConfig = {
    dataDir: cloudDir,
    http: { host: '127.0.0.1', port: cloudHttpPort },
    broker,
    store: opts.store ?? { kind: 'pglite', dir: join(cloudDir, 'pglite') },
    signing: { privateKeyFile: join(dir, 'signing.key') },
    service,
    gateways: [{ id: gateway, site, password: gwPassword }],
    commands: { defaultTtlMs: 60_000 },
    log: { level: logLevel },
  };
  const cloudConfigFile = join(dir, 'cloud.json');
  writeFileSync(cloudConfigFile, JSON.stringify(cloudConfig, null, 2));

  const edgeDataDir = opts.edgeDataDir ?? join(dir, 'edge-data');
  const edgeConfig = {
    site,
    gateway,
    dataDir: edgeDataDir,
    broker: { host: '127.0.0.1', port: edgeBrokerPort },
    http: { host: '127.0.0.1', port: edgeHttpPort },
    cloud: {
      url: cloudBrokerUrl,
      username: gateway,
      password: gwPassword,
      publicKeyFile: join(dir, 'signing.pub'),
      reconnectMinMs: 100,
      reconnectMaxMs: 1000,
      retransmitMs: 3000,
    },
    outbox: {
      kind: 'level',
      durability: opts.durability ?? 'process',
      ...opts.outbox,
    },
    devices: opts.devices.map((d) => ({ id: d.id, password: d.password })),
    heartbeatMs: 2000,
    commandTimeoutMs: 5000,
    log: { level: logLevel },
    ...opts.edge,
  };
  const edgeConfigFile = join(dir, 'edge.json');
  writeFileSync(edgeConfigFile, JSON.stringify(edgeConfig, null, 2));

  const cloudHttp = `http://127.0.0.1:${cloudHttpPort}`;
  const edgeHttp = `http://127.0.0.1:${edgeHttpPort}`;
  const cloud = nodeProc('cloud', CLOUD_BIN, cloudConfigFile, join(dir, 'cloud.log'), `${cloudHttp}/readyz`);
  const edge = nodeProc(
    'edge',
    opts.edgeBin ?? EDGE_BIN,
    edgeConfigFile,
    join(dir, 'edge.log'),
    `${edgeHttp}/readyz`,
  );

  const auth = `Basic ${Buffer.from(`${service.username}:${service.password}`).toString('base64')}`;
  const cloudApi = (path: string, init: RequestInit = {}) =>
    fetch(`${cloudHttp}${path}`, {
      ...init,
      headers: { authorization: auth, 'content-type': 'application/json', ...(init.headers ?? {}) },
      signal: init.signal ?? AbortSignal.timeout(30_000),
    });

  const stack: Stack = {
    dir,
    site,
    gateway,
    devices: opts.devices,
    mosquitto,
    cloud,
    edge,
    cloudHttp,
    edgeHttp,
    edgeBrokerUrl: `mqtt://127.0.0.1:${edgeBrokerPort}`,
    edgeBrokerPort: edgeBrokerPort!,
    edgeDataDir,
    edgeConfigFile,
    cloudConfigFile,
    service,
    privateKeyPem: keys.privateKeyPem,
    publicKeyPem: keys.publicKeyPem,
    cloudApi,
    async cloudCounts() {
      const r = await cloudApi(`/api/v1/gateways/${gateway}/counts`);
      if (!r.ok) throw new Error(`counts: HTTP ${r.status} ${await r.text()}`);
      return r.json();
    },
    async cloudEvents(lanes = ['tx', 'event', 'telemetry']) {
      const epochs = epochsOf(await stack.cloudCounts());
      const out: StoredRow[] = [];
      for (const epoch of epochs.length ? epochs : [undefined]) {
        for (const lane of lanes) {
          let after = 0;
          for (;;) {
            const q = new URLSearchParams({ lane, after: String(after), limit: '5000' });
            if (epoch) q.set('epoch', epoch);
            const r = await cloudApi(`/api/v1/gateways/${gateway}/events?${q}`);
            if (!r.ok) throw new Error(`events: HTTP ${r.status} ${await r.text()}`);
            const body = (await r.json()) as unknown;
            const b = body as { items?: unknown[]; events?: unknown[] };
            const list = (Array.isArray(body) ? body : (b.items ?? b.events ?? [])) as Array<
              StoredRow & { epoch?: string }
            >;
            if (list.length === 0) break;
            for (const e of list) out.push({ ...e, epoch: e.epoch ?? epoch ?? '' });
            after = list[list.length - 1]!.seq;
          }
        }
      }
      return out;
    },
    async edgeStatus() {
      const r = await fetch(`${edgeHttp}/status`, { signal: AbortSignal.timeout(10_000) });
      if (!r.ok) throw new Error(`edge status: HTTP ${r.status}`);
      return (await r.json()) as EdgeStatusLike;
    },
    async close() {
      // A profiled edge must exit on its own to write its profile.
      if (process.env.STORELINK_NODE_ARGS_EDGE) await edge.stop(15_000);
      await edge.dispose();
      await cloud.dispose();
      await mosquitto?.dispose();
    },
  };

  if (opts.startCloud !== false) {
    await cloud.start();
    if (opts.cloudBroker === 'embedded') await waitForPort(cloudBrokerPort!);
  }
  if (opts.startEdge !== false) await edge.start();
  return stack;
}

/** Epochs named in a counts answer, whatever its exact shape (array of rows or {lanes:[...]}) . */
export function epochsOf(counts: unknown): string[] {
  const found = new Set<string>();
  const walk = (v: unknown) => {
    if (Array.isArray(v)) v.forEach(walk);
    else if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o.epoch === 'string') found.add(o.epoch);
      for (const x of Object.values(o)) if (x && typeof x === 'object') walk(x);
    }
  };
  walk(counts);
  return [...found];
}
