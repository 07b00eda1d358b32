/**
 * `npm start`: the demo store on embedded defaults. Starts the cloud (embedded broker,
 * PGlite under .data/), one edge agent and simulated devices as three separate
 * processes — the same binaries and config files a real deployment uses — and shows a
 * live one-screen summary. Ctrl-C stops everything cleanly; the next start continues
 * from the same data.
 *
 *   npm start                      # until Ctrl-C
 *   npm start -- --duration 30     # stop by itself after 30 s (used by the smoke test)
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Writable } from 'node:stream';
import { eslDemoDevices, startEslDemo } from '../firmware-sim/src/esl/demo.ts';
import { httpNotify, httpOrderApi, SimBuyer, SimPaymentProvider } from '../firmware-sim/src/payment/index.ts';
import { type ProviderHttp, startProviderHttp } from '../firmware-sim/src/payment/provider-http.ts';

const ROOT = resolve(import.meta.dirname, '..');

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string' },
    'data-dir': { type: 'string', default: join(ROOT, '.data') },
    plain: { type: 'boolean', default: false },
  },
});

const DATA = resolve(args['data-dir']!);
const CONFIG_DIR = join(DATA, 'config');
const LOG_DIR = join(DATA, 'logs');
const SITE = 'demo-store';
const GATEWAY = 'gw-1';

interface DemoConfigs {
  cloud: string;
  edge: string;
  sim: string;
  cloudHttp: string;
  edgeHttp: string;
  edgeMqtt: string;
  eslAps: Array<{ id: string; password: string }>;
  /** Present when socat is installed: the vending machine on a serial pty pair. */
  vending?: VendingDemo;
}

interface VendingDemo {
  edgePty: string;
  boardPty: string;
  slots: Array<{ item: number; priceCents: number; stock: number }>;
  providerKey: string;
  /** The provider's merchant API (docs/vending.md "Provider adapter"); added to older files at start. */
  mchid?: string;
  merchantKey?: string;
  providerPort?: number;
}

function findOnPath(bin: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, bin))) return join(dir, bin);
  }
  return undefined;
}

/** Prefers the documented port; falls back to a free one when something else holds it. */
async function portOr(preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | null>((res) => {
      const srv = createServer();
      srv.once('error', () => res(null));
      srv.listen(port, '127.0.0.1', () => {
        const bound = (srv.address() as { port: number }).port;
        srv.close(() => res(bound));
      });
    });
  return (await tryListen(preferred)) ?? (await tryListen(0))!;
}

const secret = () => randomBytes(12).toString('base64url');

function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, 'utf8')) as T;
}

/** Writes the three config files on first start; later starts reuse them (and their secrets). */
async function ensureConfigs(): Promise<DemoConfigs> {
  mkdirSync(CONFIG_DIR, { recursive: true });
  mkdirSync(LOG_DIR, { recursive: true });
  const paths = {
    cloud: join(CONFIG_DIR, 'cloud.json'),
    edge: join(CONFIG_DIR, 'edge.json'),
    sim: join(CONFIG_DIR, 'sim.json'),
  };
  if (!existsSync(paths.cloud) || !existsSync(paths.edge) || !existsSync(paths.sim)) {
    const ports = {
      cloudHttp: await portOr(8080),
      cloudMqtt: await portOr(1884),
      edgeMqtt: await portOr(1883),
      edgeWs: await portOr(8883),
      edgeHttp: await portOr(8081),
    };
    const gatewayPassword = secret();
    // The vending machine needs a serial link between two processes: a socat pty pair.
    const vending: VendingDemo | undefined = findOnPath('socat')
      ? {
          edgePty: join(DATA, 'vmc', 'edge.pty'),
          boardPty: join(DATA, 'vmc', 'board.pty'),
          slots: [
            { item: 11, priceCents: 350, stock: 500 },
            { item: 12, priceCents: 500, stock: 500 },
          ],
          providerKey: secret(),
          mchid: '1900000109',
          merchantKey: secret(),
          providerPort: await portOr(8091),
        }
      : undefined;
    const privateKeyFile = join(DATA, 'cloud', 'command-key.pem');
    const devices = [
      { id: 'fridge-1', kind: 'fridge', password: secret(), intervalMs: 1000 },
      { id: 'fridge-2', kind: 'fridge', password: secret(), intervalMs: 1000 },
      { id: 'vend-1', kind: 'vending', password: secret(), intervalMs: 2000 },
      { id: 'vend-2', kind: 'vending', password: secret(), intervalMs: 2000 },
    ];
    const cloud = {
      dataDir: join(DATA, 'cloud'),
      http: { host: '127.0.0.1', port: ports.cloudHttp },
      broker: { mode: 'embedded', host: '127.0.0.1', port: ports.cloudMqtt },
      store: { kind: 'pglite', dir: join(DATA, 'cloud', 'pg') },
      signing: { privateKeyFile },
      service: { username: 'storelink-cloud', password: secret() },
      gateways: [{ id: GATEWAY, site: SITE, name: 'Demo store, machine 1', password: gatewayPassword }],
      ...(vending
        ? { payments: { providers: { wechat: { algorithm: 'hmac-sha256', key: vending.providerKey } } } }
        : {}),
      log: { level: 'info' },
    };
    // The store's ESL access point: a device of the edge broker like any other [docs/esl.md].
    const eslAps = eslDemoDevices(() => secret());
    const edge = {
      site: SITE,
      gateway: GATEWAY,
      dataDir: join(DATA, 'edge'),
      broker: { host: '127.0.0.1', port: ports.edgeMqtt, wsPort: ports.edgeWs },
      http: { host: '127.0.0.1', port: ports.edgeHttp },
      cloud: {
        url: `mqtt://127.0.0.1:${ports.cloudMqtt}`,
        username: GATEWAY,
        password: gatewayPassword,
        publicKeyFile: `${privateKeyFile}.pub`,
      },
      devices: [...devices.map(({ id, password, kind }) => ({ id, password, kind })), ...eslAps],
      // The board reports the drop over the link (no GPIO here) [docs/vending.md].
      ...(vending
        ? {
            vending: {
              serialPath: vending.edgePty,
              slots: vending.slots.map((s) => s.item),
              dropGpio: 'serial',
            },
          }
        : {}),
      log: { level: 'info' },
    };
    const sim = { brokerUrl: `mqtt://127.0.0.1:${ports.edgeMqtt}`, devices };
    writeFileSync(paths.cloud, JSON.stringify(cloud, null, 2) + '\n', { mode: 0o600 });
    writeFileSync(paths.edge, JSON.stringify(edge, null, 2) + '\n', { mode: 0o600 });
    writeFileSync(paths.sim, JSON.stringify(sim, null, 2) + '\n', { mode: 0o600 });
    if (vending)
      writeFileSync(join(CONFIG_DIR, 'vending-demo.json'), JSON.stringify(vending, null, 2) + '\n');
  }
  const vendingFile = join(CONFIG_DIR, 'vending-demo.json');
  const cloud = readJson<{ http: { port: number } }>(paths.cloud);
  const edge = readJson<{
    http: { port: number };
    broker: { port: number };
    devices: Array<{ id: string; password: string; kind?: string }>;
  }>(paths.edge);
  return {
    ...paths,
    cloudHttp: `http://127.0.0.1:${cloud.http.port}`,
    edgeHttp: `http://127.0.0.1:${edge.http.port}`,
    edgeMqtt: `mqtt://127.0.0.1:${edge.broker.port}`,
    eslAps: edge.devices.filter((d) => d.kind === 'esl-ap').map(({ id, password }) => ({ id, password })),
    ...(existsSync(vendingFile) && findOnPath('socat') ? { vending: await providerApiOf(vendingFile) } : {}),
  };
}

/** The vending demo file, with the provider API's merchant id, key and port (added once to older files). */
async function providerApiOf(file: string): Promise<VendingDemo> {
  const v = readJson<VendingDemo>(file);
  if (v.mchid && v.merchantKey && v.providerPort) return v;
  const full = { ...v, mchid: '1900000109', merchantKey: secret(), providerPort: await portOr(8091) };
  writeFileSync(file, JSON.stringify(full, null, 2) + '\n');
  return full;
}

interface Proc {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
}

const procs: Proc[] = [];
const stopHooks: Array<() => Promise<void>> = [];
let stopping = false;

function launch(name: string, bin: string, config: string, env: Record<string, string> = {}): Proc {
  return launchArgv(name, process.execPath, [join(ROOT, bin), '--config', config], { env });
}

function launchArgv(
  name: string,
  command: string,
  argv: string[],
  opts: { env?: Record<string, string>; stdin?: boolean } = {},
): Proc {
  const log = createWriteStream(join(LOG_DIR, `${name}.log`), { flags: 'a' });
  const child = spawn(command, argv, {
    cwd: ROOT,
    stdio: [opts.stdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...opts.env },
  });
  child.stdout!.pipe(log);
  child.stderr!.pipe(log);
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  const proc = { name, child, exited };
  void exited.then((code) => {
    if (!stopping) {
      console.error(`\n${name} exited unexpectedly (code ${code}); see ${join(LOG_DIR, `${name}.log`)}`);
      void shutdown(1);
    }
  });
  procs.push(proc);
  return proc;
}

async function waitReady(name: string, url: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (stopping) return;
    try {
      const r = await fetch(`${url}/readyz`);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`${name} did not become ready within ${timeoutMs / 1000} s; see ${LOG_DIR}/${name}.log`);
}

async function shutdown(code: number): Promise<never> {
  stopping = true;
  for (const hook of stopHooks) await hook();
  // Stop in reverse order: devices, then the edge (it publishes its death), then the cloud.
  for (const p of [...procs].reverse()) {
    p.child.kill('SIGINT');
    const done = await Promise.race([p.exited, new Promise((r) => setTimeout(() => r('timeout'), 10_000))]);
    if (done === 'timeout') p.child.kill('SIGKILL');
  }
  process.exit(code);
}

async function getJson<T>(url: string): Promise<T | undefined> {
  try {
    const r = await fetch(url);
    return r.ok ? ((await r.json()) as T) : undefined;
  } catch {
    return undefined;
  }
}

// ---------------- the vending machine: serial link, board, buyers ----------------

async function startSerialLink(v: VendingDemo): Promise<void> {
  mkdirSync(join(DATA, 'vmc'), { recursive: true });
  launchArgv('socat', 'socat', [`pty,raw,echo=0,link=${v.edgePty}`, `pty,raw,echo=0,link=${v.boardPty}`]);
  const deadline = Date.now() + 10_000;
  while (!(existsSync(v.edgePty) && existsSync(v.boardPty))) {
    if (Date.now() > deadline) throw new Error('socat did not create the serial pty pair');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The board process; its stdin takes fault commands (`fault jam`). */
function startBoard(v: VendingDemo): Proc {
  const slots = v.slots.map((s) => `${s.item}:${s.priceCents}:${s.stock}`).join(',');
  return launchArgv(
    'board',
    process.execPath,
    ['--import', 'tsx', join(ROOT, 'firmware-sim/src/vmc/main.ts'), '--path', v.boardPty, '--slots', slots],
    { stdin: true },
  );
}

/**
 * The simulated payment provider of the demo: it sends signed notifications to the cloud
 * and serves its merchant API (query, close, refund) over HTTP on 127.0.0.1, which the
 * cloud reaches through its HTTP adapter — configured by the STORELINK_CLOUD_PAYMENTS_PROVIDER_*
 * variables handed to the cloud process (docs/vending.md "Provider adapter").
 */
async function startProvider(
  cfg: DemoConfigs,
  v: VendingDemo,
): Promise<{ provider: SimPaymentProvider; http: ProviderHttp; cloudEnv: Record<string, string> }> {
  const provider = new SimPaymentProvider({
    algorithm: 'hmac-sha256',
    key: v.providerKey,
    now: Date.now,
    deliver: httpNotify(cfg.cloudHttp),
  });
  const http = await startProviderHttp({
    provider,
    mchid: v.mchid!,
    merchant: { algorithm: 'hmac-sha256', key: v.merchantKey! },
    now: Date.now,
    port: await portOr(v.providerPort!),
  });
  stopHooks.push(() => http.close());
  return {
    provider,
    http,
    cloudEnv: {
      STORELINK_CLOUD_PAYMENTS_PROVIDER_BASE_URL: http.url,
      STORELINK_CLOUD_PAYMENTS_PROVIDER_MCHID: v.mchid!,
      STORELINK_CLOUD_PAYMENTS_PROVIDER_MERCHANT_KEY: v.merchantKey!,
    },
  };
}

interface OrderRow {
  id: string;
  state: string;
  slot: number;
  amountCents: number;
  failureReason?: string | null;
}

/**
 * A buyer every 15 s: create the order (the machine's QR flow), pay, follow it to its end.
 * The second of every four purchases jams the board (`fault jam`): the vend fails and the order must end
 * `refunded` through the provider's refund API.
 */
class PurchaseFlow {
  private readonly buyer: SimBuyer;
  private current: { id: string; slot: number; amountCents: number; paidAt: number } | undefined;
  private lastAt = 0;
  private n = 0;
  line = 'waiting for the first buyer';
  readonly totals = { dispensed: 0, refunded: 0 };

  constructor(
    private readonly cfg: DemoConfigs,
    private readonly v: VendingDemo,
    private readonly provider: SimPaymentProvider,
    private readonly board: Proc | undefined,
  ) {
    this.buyer = new SimBuyer(httpOrderApi(cfg.cloudHttp), this.provider);
  }

  async step(now: number): Promise<void> {
    await this.provider.tick(now).catch(() => undefined);
    if (this.current) {
      const order = await getJson<OrderRow>(`${this.cfg.cloudHttp}/api/v1/orders/${this.current.id}`);
      const took = now - this.current.paidAt;
      // A refund goes through the provider's refund API (sweeper, every few seconds); give
      // it two minutes before showing it as still pending.
      const settled = order && ['dispensed', 'refunded'].includes(order.state);
      const gaveUp = order?.state === 'refunding' && took > 120_000;
      if (order && (settled || gaveUp)) {
        if (order.state === 'dispensed') this.totals.dispensed++;
        if (order.state === 'refunded') this.totals.refunded++;
        const why = order.failureReason ? ` (${order.failureReason})` : '';
        this.line = `order ${order.id.slice(-6)} slot ${order.slot} ¥${(order.amountCents / 100).toFixed(2)} paid → ${order.state}${why} in ${took} ms`;
        this.current = undefined;
      } else if (order?.state === 'refunding') {
        this.line = `order ${order.id.slice(-6)} slot ${order.slot} not dispensed (${order.failureReason ?? '?'}), refunding…`;
      }
      return;
    }
    if (now - this.lastAt < 15_000) return;
    this.lastAt = now;
    const slot = this.v.slots[this.n % this.v.slots.length]!;
    this.n++;
    // The second of every four buyers meets a jammed coil: the motor turns, nothing drops.
    if (this.n % 4 === 2) this.board?.child.stdin?.write('fault jam\n');
    try {
      const { order } = await this.buyer.buy({
        gateway: GATEWAY,
        slot: slot.item,
        amountCents: slot.priceCents,
      });
      this.current = { id: order.id, slot: slot.item, amountCents: slot.priceCents, paidAt: Date.now() };
      await this.provider.tick(Date.now());
      this.line = `order ${order.id.slice(-6)} slot ${slot.item} paid, dispensing…`;
    } catch (e) {
      this.line = `buyer could not order: ${(e as Error).message}`;
    }
  }
}

// ---------------- electronic price tags: a price campaign in the demo store ----------------

interface CampaignProgress {
  total: number;
  counts: Record<string, number>;
  done?: boolean;
}

/**
 * Changes four prices in the demo store and lets 12 simulated tags behind one access
 * point pick them up; the summary shows the campaign tag by tag, confirmed by hash. The
 * demo's own progress bar and report go to logs/esl.log.
 */
class PriceCampaignDemo {
  campaignId: string | undefined;
  line = 'starting';
  private stopDemo: (() => Promise<void>) | undefined;

  constructor(private readonly cfg: DemoConfigs) {}

  start(): void {
    const log = createWriteStream(join(LOG_DIR, 'esl.log'), { flags: 'a' });
    const self = this;
    const out = new Writable({
      write(chunk: Buffer, _enc, cb) {
        const m = /price campaign (\S+)/.exec(chunk.toString());
        if (m) self.campaignId = m[1];
        log.write(chunk, cb);
      },
    });
    startEslDemo({
      cloudUrl: this.cfg.cloudHttp,
      edgeBrokerUrl: this.cfg.edgeMqtt,
      site: SITE,
      gateway: GATEWAY,
      aps: this.cfg.eslAps,
      out,
      timeoutMs: 600_000,
    }).then(
      (demo) => {
        this.stopDemo = () => demo.stop();
      },
      (e: unknown) => {
        this.line = `demo failed: ${(e as Error).message} (see ${LOG_DIR}/esl.log)`;
      },
    );
  }

  async refresh(): Promise<void> {
    if (!this.campaignId) return;
    const p = await getJson<CampaignProgress>(`${this.cfg.cloudHttp}/api/v1/campaigns/${this.campaignId}`);
    if (!p) return;
    const c = p.counts;
    this.line = `${c.confirmed ?? 0}/${p.total} tags confirmed by hash (pushed ${c.pushed ?? 0}, waiting ${c.sent ?? 0}, failed ${c.failed ?? 0}, superseded ${c.superseded ?? 0})`;
  }

  async stop(): Promise<void> {
    await this.stopDemo?.().catch(() => undefined);
  }
}

// ---------------- live summary ----------------

interface EdgeStatus {
  devices?: Array<{ id: string; online: boolean }>;
  outbox?: {
    depth: number;
    bytes: number;
    oldestAgeMs: number;
    lanes?: Record<string, { ackedSeq: number }>;
  };
  uplink?: { connected: boolean; bdSeq?: number };
}
interface Counts {
  items?: Array<{ epoch: string; lane: string; stored: number; acked: number }>;
}
interface CommandRow {
  id: string;
  status: string;
  rttMs?: number | null;
}

interface Sample {
  at: number;
  stored: number;
  acked: number;
}

async function summaryLoop(
  cfg: DemoConfigs,
  durationMs: number | undefined,
  vending: { provider: SimPaymentProvider; board: Proc | undefined } | undefined,
): Promise<void> {
  const startedAt = Date.now();
  let prev: Sample | undefined;
  let lastCommand: { id: string; sentAt: number } | undefined;
  let lastRoundTrip = '—';
  let lastPing = 0;
  const tty = process.stdout.isTTY && !args.plain;
  const purchases =
    cfg.vending && vending ? new PurchaseFlow(cfg, cfg.vending, vending.provider, vending.board) : undefined;
  const prices = cfg.eslAps.length > 0 ? new PriceCampaignDemo(cfg) : undefined;
  prices?.start();
  stopHooks.push(async () => prices?.stop());
  if (!tty) {
    console.log(
      `dashboard ${cfg.cloudHttp}/dashboard | API ${cfg.cloudHttp}/api/v1/gateways | API docs ${cfg.cloudHttp}/docs | edge ${cfg.edgeHttp}/status`,
    );
  }

  for (;;) {
    if (durationMs !== undefined && Date.now() - startedAt >= durationMs) return;
    const now = Date.now();
    const [status, counts] = await Promise.all([
      getJson<EdgeStatus>(`${cfg.edgeHttp}/status`),
      getJson<Counts>(`${cfg.cloudHttp}/api/v1/gateways/${GATEWAY}/counts`),
    ]);
    const stored = (counts?.items ?? []).reduce((s, l) => s + l.stored, 0);
    const acked = (counts?.items ?? []).reduce((s, l) => s + l.acked, 0);
    const dt = prev ? (now - prev.at) / 1000 : 0;
    const inRate = prev && dt > 0 ? (stored - prev.stored) / dt : 0;
    const ackRate = prev && dt > 0 ? (acked - prev.acked) / dt : 0;
    prev = { at: now, stored, acked };

    // A ping through the whole path every 10 s: cloud → edge → cloud.
    if (now - lastPing > 10_000) {
      lastPing = now;
      const r = await fetch(`${cfg.cloudHttp}/api/v1/gateways/${GATEWAY}/commands`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ type: 'ping', target: { device: 'fridge-1' }, payload: { echo: 'summary' } }),
      }).catch(() => undefined);
      if (r?.ok) lastCommand = { id: ((await r.json()) as CommandRow).id, sentAt: now };
    }
    if (lastCommand) {
      const row = await getJson<CommandRow>(`${cfg.cloudHttp}/api/v1/commands/${lastCommand.id}`);
      if (row && row.status !== 'sent' && row.status !== 'pending') {
        lastRoundTrip = `${row.status}${row.rttMs != null ? ` in ${row.rttMs} ms` : ''}`;
        lastCommand = undefined;
      }
    }

    await purchases?.step(now);
    await prices?.refresh();
    const devices = status?.devices ?? [];
    const online = devices.filter((d) => d.online).length;
    const lines = [
      `storelink demo — ${SITE}/${GATEWAY}   up ${Math.round((now - startedAt) / 1000)} s`,
      '',
      `devices online      ${online}/${devices.length}   ${devices.map((d) => `${d.id}${d.online ? '' : '(off)'}`).join(' ')}`,
      `uplink              ${status?.uplink?.connected ? 'connected' : 'DISCONNECTED'}   bdSeq ${status?.uplink?.bdSeq ?? '—'}`,
      `events/s in cloud   ${inRate.toFixed(1)}   (stored ${stored})`,
      `events/s acked      ${ackRate.toFixed(1)}   (acked ${acked})`,
      `outbox depth        ${status?.outbox?.depth ?? '—'} events, ${status?.outbox?.bytes ?? '—'} bytes, oldest ${status?.outbox?.oldestAgeMs ?? '—'} ms`,
      `last command        ping → fridge-1: ${lastRoundTrip}`,
      purchases
        ? `last purchase       ${purchases.line}   (dispensed ${purchases.totals.dispensed}, refunded ${purchases.totals.refunded})`
        : 'last purchase       vending demo off (needs socat for the serial link: apt-get install socat)',
      `price campaign      ${prices ? prices.line : 'off (this data dir predates the ESL demo)'}`,
      '',
      `dashboard  ${cfg.cloudHttp}/dashboard`,
      `API        ${cfg.cloudHttp}/api/v1/gateways`,
      `API docs   ${cfg.cloudHttp}/docs`,
      `edge       ${cfg.edgeHttp}/status   ${cfg.edgeHttp}/metrics`,
      `logs       ${LOG_DIR}/`,
      'Ctrl-C stops everything',
    ];
    if (tty) process.stdout.write('\x1b[H\x1b[2J' + lines.join('\n') + '\n');
    else if (Math.round((now - startedAt) / 1000) % 5 === 0) console.log(lines.slice(2, 10).join(' | '));
    await new Promise((r) => setTimeout(r, 1000));
  }
}

async function main(): Promise<void> {
  process.on('SIGINT', () => void shutdown(0));
  process.on('SIGTERM', () => void shutdown(0));
  const cfg = await ensureConfigs();
  console.log(`data and configs in ${DATA}`);
  // The provider listens first: the cloud is configured with its API address.
  const pay = cfg.vending ? await startProvider(cfg, cfg.vending) : undefined;
  launch('cloud', 'cloud/bin/storelink-cloud.js', cfg.cloud, pay?.cloudEnv);
  await waitReady('cloud', cfg.cloudHttp);
  if (cfg.vending) await startSerialLink(cfg.vending);
  launch('edge', 'edge/bin/storelink-edge.js', cfg.edge);
  await waitReady('edge', cfg.edgeHttp);
  launch('sim', 'firmware-sim/bin/storelink-sim.js', cfg.sim);
  const board = cfg.vending ? startBoard(cfg.vending) : undefined;
  const duration = args.duration ? Number(args.duration) * 1000 : undefined;
  await summaryLoop(cfg, duration, pay ? { provider: pay.provider, board } : undefined);
  await shutdown(0);
}

main().catch((e: unknown) => {
  console.error((e as Error).message);
  void shutdown(1);
});
