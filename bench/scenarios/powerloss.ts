import { closeSync, openSync, readdirSync, statSync, truncateSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { sleep } from '../../test/helpers/ports.ts';
import { makeDevices, startStack } from '../../test/helpers/stack.ts';
import { cleanupTempDirs, tempMark } from '../../test/helpers/tmp.ts';
import { type StoredRow, verifyDelivery } from '../../test/helpers/verify.ts';
import { log, num, type Scenario, str } from '../lib.ts';
import {
  type AckRecord,
  checkCloud,
  ours,
  readEdgeOutbox,
  startQos1Publishers,
  waitDrained,
} from './common.ts';

export interface PowerLossResult {
  mode: string;
  cutBytes: number;
  acked: number;
  /** Acked messages that are gone (not in the cloud, or not in the outbox with --verify edge). */
  missing: number;
  /** What the agent reported lost at restart (RecoveryReport.lostCount). */
  reportedLost: number;
  reportedRanges: Record<string, Array<[number, number]>>;
  /** Seqs absent from the store that the report does not name (must be 0: the report is exact). */
  unreported: number;
  /** Seqs the report names that are in fact present (must be 0). */
  overreported: number;
  duplicates: number;
  reordered: number;
  recoveryMessage: string;
  agentUp: boolean;
}

/** The newest LevelDB write-ahead log under `dir` (`NNNNNN.log`). */
export function newestLevelLog(dir: string): string | undefined {
  const found: Array<{ path: string; n: number }> = [];
  const walk = (d: string) => {
    for (const f of readdirSync(d, { withFileTypes: true })) {
      if (f.isDirectory()) walk(join(d, f.name));
      else if (/^\d+\.log$/.test(f.name))
        found.push({ path: join(d, f.name), n: Number.parseInt(f.name, 10) });
    }
  };
  walk(dir);
  found.sort((a, b) => b.n - a.n);
  return found[0]?.path;
}

/** Simulates a power cut's damage on the log tail: cut off (`truncate`) or zero (`zero`) the last `bytes`. */
export function damageLogTail(file: string, mode: 'truncate' | 'zero', bytes: number): number {
  const size = statSync(file).size;
  const n = Math.min(bytes, size);
  if (mode === 'truncate') truncateSync(file, size - n);
  else {
    const fd = openSync(file, 'r+');
    writeSync(fd, Buffer.alloc(n), 0, n, size - n);
    closeSync(fd);
  }
  return n;
}

/** Seqs per lane (of this run's messages) missing in `rows` between 1 and next-1. */
function missingSeqs(rows: StoredRow[], next: Record<string, number>): Map<string, Set<number>> {
  const out = new Map<string, Set<number>>();
  for (const lane of Object.keys(next)) {
    const have = new Set(rows.filter((r) => r.lane === lane).map((r) => r.seq));
    const miss = new Set<number>();
    for (let s = 1; s < (next[lane] ?? 1); s++) if (!have.has(s)) miss.add(s);
    out.set(lane, miss);
  }
  return out;
}

/**
 * `torture powerloss`: fill the edge outbox (no cloud, so nothing drains), SIGKILL the
 * agent, damage the tail of LevelDB's log as a power cut would (cut or zero-filled),
 * restart it and compare what it *reports* lost [OUTBOX-RECOVER-1] with what is really
 * gone, seq by seq. Then (default) start the cloud, let the outbox drain and check the
 * cloud side: everything not reported lost arrived exactly once, in order.
 */
export const powerloss: Scenario<PowerLossResult> = {
  name: 'powerloss',
  description:
    'truncate / zero-fill the LevelDB log tail after SIGKILL; the agent must report exactly what was lost',
  mustBeZero: ['unreported', 'overreported', 'duplicates', 'reordered'],
  options: {
    mode: { type: 'string', default: 'truncate' },
    'cut-bytes': { type: 'string', default: '20000' },
    messages: { type: 'string', default: '500' },
    devices: { type: 'string', default: '4' },
    durability: { type: 'string', default: 'power' },
    verify: { type: 'string', default: 'cloud' },
  },
  async run(a) {
    const mark = tempMark();
    const mode = str(a.mode, 'truncate') as 'truncate' | 'zero';
    const verify = str(a.verify, 'cloud') as 'cloud' | 'edge';
    const nDev = num(a.devices, 4);
    const devices = [
      ...makeDevices(Math.ceil(nDev / 2), 'telemetry', 'tel'),
      ...makeDevices(Math.floor(nDev / 2), 'device.alarm', 'alm'),
    ];
    const stack = await startStack({
      cloudBroker: 'embedded',
      devices,
      durability: str(a.durability, 'power') as 'process' | 'power',
      startCloud: false,
    });
    const ackLog: AckRecord[] = [];
    const runId = `p${Date.now().toString(36)}`;
    try {
      const perDevice = Math.ceil(num(a.messages, 500) / nDev);
      const pubs = startQos1Publishers({
        brokerUrl: stack.edgeBrokerUrl,
        devices,
        ratePerDevice: 'max',
        inflight: 8,
        payloadBytes: 300,
        ackLog,
        runId,
        maxPerDevice: perDevice,
      });
      await pubs.done();
      await pubs.close();
      // The disconnects append device.offline events; let them land before the snapshot.
      let before = await stack.edgeStatus();
      for (let stable = 0; stable < 5; ) {
        await sleep(200);
        const s = await stack.edgeStatus();
        stable = s.outbox.depth === before.outbox.depth ? stable + 1 : 0;
        before = s;
      }
      const next: Record<string, number> = {};
      for (const [lane, s] of Object.entries(before.outbox.lanes)) next[lane] = s.nextSeq;
      log(`acked ${ackLog.length}; outbox depth ${before.outbox.depth}; next ${JSON.stringify(next)}`);
      await stack.edge.kill('SIGKILL');
      const file = newestLevelLog(stack.edgeDataDir);
      if (!file) throw new Error(`no LevelDB log under ${stack.edgeDataDir}`);
      const cut = damageLogTail(file, mode, num(a['cut-bytes'], 20000));
      log(`${mode} ${cut} bytes at the end of ${file}`);
      await stack.edge.start();
      const after = await stack.edgeStatus();
      const rec = after.recovery;
      log(`recovery: ${rec.message}`);
      const agentUp = stack.edge.running;

      let rows: StoredRow[];
      let report: ReturnType<typeof verifyDelivery>;
      if (verify === 'cloud') {
        await stack.cloud.start();
        await waitDrained(stack, 120_000);
        report = await checkCloud(stack, ackLog, runId);
        rows = await stack.cloudEvents(['event', 'telemetry']);
      } else {
        await stack.edge.kill('SIGKILL');
        rows = await readEdgeOutbox(stack.edgeDataDir);
        report = verifyDelivery(ackLog, rows, ours(runId));
      }
      const reported = new Map<string, Set<number>>();
      for (const [lane, ranges] of Object.entries(rec.lost ?? {})) {
        const s = new Set<number>();
        for (const [from, to] of ranges) for (let q = from; q <= to; q++) s.add(q);
        reported.set(lane, s);
      }
      let unreported = 0;
      let overreported = 0;
      for (const [lane, miss] of missingSeqs(rows, next)) {
        const rep = reported.get(lane) ?? new Set<number>();
        for (const q of miss) if (!rep.has(q)) unreported++;
        for (const q of rep) if (!miss.has(q)) overreported++;
      }
      return {
        mode,
        cutBytes: cut,
        acked: report.acked,
        missing: report.lost,
        reportedLost: rec.lostCount,
        reportedRanges: rec.lost ?? {},
        unreported,
        overreported,
        duplicates: report.duplicates,
        reordered: report.reordered,
        recoveryMessage: rec.message,
        agentUp,
      };
    } finally {
      await stack.close();
      cleanupTempDirs(mark);
    }
  },
};
