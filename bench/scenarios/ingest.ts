import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, sleep, waitForPort } from '../../test/helpers/ports.ts';
import { Proc } from '../../test/helpers/proc.ts';
import { makeDevices, ROOT, type Stack, startStack } from '../../test/helpers/stack.ts';
import { cleanupTempDirs, tempMark, tempDir } from '../../test/helpers/tmp.ts';
import { log, num, type Scenario } from '../lib.ts';
import { startQos1Publishers } from './common.ts';

export interface IngestResult {
  raw_msgs_s: number;
  process_msgs_s: number;
  power_msgs_s: number;
  ratio_process: number;
  ratio_power: number;
  /** Same edge with the in-memory outbox: what the path costs without LevelDB. */
  memory_msgs_s: number;
  ratio_memory: number;
  cpu_us_per_msg: Record<Mode, number>;
  devices: number;
  inflight: number;
  payloadBytes: number;
  seconds: number;
  rounds: number;
  edgePeakRssMB: number;
}

type Mode = 'raw' | 'process' | 'power' | 'memory';

/** CPU time (user + system, all threads) a process has used so far, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    // Fields after the parenthesised command name: utime is the 12th, stime the 13th.
    const rest = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(rest[11]) + Number(rest[12])) / CLOCK_TICKS;
  } catch {
    return 0;
  }
}
/** USER_HZ: 100 on Linux (sysconf(_SC_CLK_TCK)); /proc reports clock ticks. */
const CLOCK_TICKS = 100;

/**
 * `bench ingest`: device QoS1 publishes (firmware-sim loadgen, `--devices` clients,
 * `--inflight` window each, `--payload-bytes`) into (a) plain aedes with no outbox and
 * (b) the edge agent with the LevelDB outbox at durability `process` and (c) `power`,
 * and (d) the same edge with the in-memory outbox (no LevelDB: what the rest of the
 * path costs), all in this run with the same loadgen. The figure is PUBACKs per second over a
 * measured window after a warm-up; each round runs every mode once, the median is kept.
 */
export const ingest: Scenario<IngestResult> = {
  name: 'ingest',
  description: 'QoS1 publish throughput into the edge (outbox process/power) vs raw aedes, same loadgen',
  options: {
    devices: { type: 'string', default: '10' },
    inflight: { type: 'string', default: '32' },
    'payload-bytes': { type: 'string', default: '200' },
    seconds: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '2' },
    rounds: { type: 'string', default: '1' },
  },
  async run(a) {
    const mark = tempMark();
    const nDev = num(a.devices, 10);
    const inflight = num(a.inflight, 32);
    const payloadBytes = num(a['payload-bytes'], 200);
    const seconds = num(a.seconds, 8);
    const warmup = num(a.warmup, 2);
    const rounds = num(a.rounds, 1);
    const results: Record<Mode, number[]> = { raw: [], process: [], power: [], memory: [] };
    const cpu: Record<Mode, number[]> = { raw: [], process: [], power: [], memory: [] };
    let peak = 0;
    try {
      for (let r = 0; r < rounds; r++) {
        for (const mode of ['raw', 'process', 'power', 'memory'] as Mode[]) {
          const { rate, cpuUsPerMsg, rss } = await measure(mode, {
            nDev,
            inflight,
            payloadBytes,
            seconds,
            warmup,
            round: r,
          });
          results[mode].push(rate);
          cpu[mode].push(cpuUsPerMsg);
          peak = Math.max(peak, rss);
          log(
            `round ${r + 1}/${rounds} ${mode}: ${rate.toFixed(0)} msgs/s, ${cpuUsPerMsg.toFixed(1)} CPU µs/msg`,
          );
        }
      }
    } finally {
      cleanupTempDirs(mark);
    }
    const med = (xs: number[]) => {
      const s = [...xs].sort((x, y) => x - y);
      return s[Math.floor(s.length / 2)] ?? 0;
    };
    const raw = med(results.raw);
    const proc = med(results.process);
    const power = med(results.power);
    const memory = med(results.memory);
    return {
      raw_msgs_s: Math.round(raw),
      process_msgs_s: Math.round(proc),
      power_msgs_s: Math.round(power),
      ratio_process: round3(proc / raw),
      ratio_power: round3(power / raw),
      memory_msgs_s: Math.round(memory),
      ratio_memory: round3(memory / raw),
      // Broker-process CPU per PUBACK: less sensitive than msgs/s to other load on the machine.
      cpu_us_per_msg: {
        raw: round1(med(cpu.raw)),
        process: round1(med(cpu.process)),
        power: round1(med(cpu.power)),
        memory: round1(med(cpu.memory)),
      },
      devices: nDev,
      inflight,
      payloadBytes,
      seconds,
      rounds,
      edgePeakRssMB: Math.round(peak / 2 ** 20),
    };
  },
};

const round3 = (x: number) => Math.round(x * 1000) / 1000;
const round1 = (x: number) => Math.round(x * 10) / 10;

async function measure(
  mode: Mode,
  o: { nDev: number; inflight: number; payloadBytes: number; seconds: number; warmup: number; round: number },
): Promise<{ rate: number; cpuUsPerMsg: number; rss: number }> {
  const devices = makeDevices(o.nDev, 'telemetry', 'ing');
  let brokerUrl: string;
  let stack: Stack | undefined;
  let raw: Proc | undefined;
  if (mode === 'raw') {
    const port = await freePort();
    const dir = tempDir('storelink-raw-');
    raw = new Proc({
      name: 'raw-aedes',
      command: process.execPath,
      args: ['--import', 'tsx', join(ROOT, 'bench/raw-aedes.ts'), String(port)],
      cwd: ROOT,
      logFile: join(dir, 'raw.log'),
    });
    await raw.start();
    await waitForPort(port);
    brokerUrl = `mqtt://127.0.0.1:${port}`;
  } else {
    stack = await startStack({
      cloudBroker: 'embedded',
      startCloud: false,
      devices,
      durability: mode === 'memory' ? 'process' : mode,
      // A budget no run reaches, so the figure is the append path, not drop bookkeeping.
      outbox: {
        ...(mode === 'memory' ? { kind: 'memory' } : {}),
        maxBytes: 16 * 2 ** 30,
        lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: 0, ttlMs: 86_400_000 } },
      },
      logLevel: 'error',
    });
    brokerUrl = stack.edgeBrokerUrl;
  }
  const pubs = startQos1Publishers({
    brokerUrl,
    devices,
    ratePerDevice: 'max',
    inflight: o.inflight,
    payloadBytes: o.payloadBytes,
    keepAcked: false,
    runId: `i${o.round}${mode}`,
  });
  try {
    await pubs.ready(30_000);
    await sleep(o.warmup * 1000);
    const proc = stack?.edge ?? raw!;
    const a0 = pubs.ackedCount();
    const c0 = cpuSeconds(proc.pid);
    const t0 = performance.now();
    await sleep(o.seconds * 1000);
    const a1 = pubs.ackedCount();
    const c1 = cpuSeconds(proc.pid);
    const t1 = performance.now();
    return {
      rate: (a1 - a0) / ((t1 - t0) / 1000),
      cpuUsPerMsg: ((c1 - c0) * 1e6) / Math.max(1, a1 - a0),
      rss: mode === 'raw' ? 0 : proc.peakRssBytes,
    };
  } finally {
    await pubs.close();
    await stack?.close();
    await raw?.dispose();
  }
}
