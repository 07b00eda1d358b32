import { execFileSync } from 'node:child_process';
import { mkdirSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { sendCommand, waitCommandDone } from '../../test/helpers/commands.ts';
import { sleep } from '../../test/helpers/ports.ts';
import { makeDevices, startStack } from '../../test/helpers/stack.ts';
import { cleanupTempDirs, tempMark, tempDir } from '../../test/helpers/tmp.ts';
import { verifyDelivery } from '../../test/helpers/verify.ts';
import { log, num, type Scenario, str } from '../lib.ts';
import { type AckRecord, ours, readEdgeOutbox, startQos1Publishers, waitDrained } from './common.ts';

export interface DiskFullResult {
  fsMB: number;
  /** How the small filesystem was made. */
  fs: string;
  diskUsedPctAtFull: number;
  ackedEvent: number;
  lostEvent: number;
  ackedTelemetry: number;
  /** PUBACKed telemetry not in the cloud: allowed only up to what the edge counted as dropped [LANE-1]. */
  lostTelemetry: number;
  telemetryDropped: number;
  /** The edge's telemetry drops by reason (`disk`: refused below the disk reserve [OUTBOX-DISK-1]). */
  telemetryDropReasons: Record<string, number>;
  /** Times the edge reopened its store after a write error [OUTBOX-DISK-2]. */
  storeReopens: number;
  /** lostTelemetry - telemetryDropped when positive: telemetry lost without being counted (must be 0). */
  uncountedTelemetryLoss: number;
  commands: number;
  commandsOk: number;
  /** tx (command.result) events the cloud did not get (must be 0). */
  txLost: number;
  duplicates: number;
  reordered: number;
  /** The agent exited on its own (must be 0). */
  agentCrashes: number;
  /** Events still in the outbox when the drain timed out (must be 0: the agent recovers once space frees). */
  notDrained: number;
  edgeWriteErrorsLogged: number;
}

/** A small filesystem for the edge data dir: tmpfs if we may mount, else a loop-mounted ext4 image. */
export function smallFs(mb: number): { dir: string; kind: string; unmount: () => void } {
  const base = tempDir('storelink-full-');
  const dir = join(base, 'mnt');
  mkdirSync(dir);
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${mb}m`, 'tmpfs', dir], { stdio: 'pipe' });
    return {
      dir,
      kind: `tmpfs ${mb} MB`,
      unmount: () => execFileSync('umount', ['-l', dir], { stdio: 'ignore' }),
    };
  } catch {
    const img = join(base, 'fs.img');
    execFileSync('truncate', ['-s', `${mb}M`, img]);
    execFileSync('mkfs.ext4', ['-q', img]);
    execFileSync('mount', ['-o', 'loop', img, dir], { stdio: 'pipe' });
    return {
      dir,
      kind: `ext4 loop image ${mb} MB`,
      unmount: () => execFileSync('umount', ['-l', dir], { stdio: 'ignore' }),
    };
  }
}

function usedPct(dir: string): number {
  const s = statfsSync(dir);
  return Math.round((1 - s.bavail / s.blocks) * 1000) / 10;
}

/**
 * `torture diskfull`: the edge's data dir is a small filesystem; with the cloud away,
 * telemetry and event devices publish until the disk is full. Then the cloud comes
 * back, commands are sent (their results travel in the `tx` lane) while devices keep
 * publishing, and everything drains. Checks: the agent never exits, no PUBACKed event
 * or tx result is lost, telemetry loss only as counted drops [LANE-1].
 */
export const diskfull: Scenario<DiskFullResult> = {
  name: 'diskfull',
  description:
    'edge data dir on a small tmpfs, filled while the cloud is away; tx never lost, telemetry drops counted, no crash',
  mustBeZero: [
    'lostEvent',
    'uncountedTelemetryLoss',
    'txLost',
    'duplicates',
    'reordered',
    'agentCrashes',
    'notDrained',
  ],
  options: {
    'fs-mb': { type: 'string', default: '24' },
    'fill-s': { type: 'string', default: '60' },
    commands: { type: 'string', default: '10' },
    'payload-bytes': { type: 'string', default: '1000' },
    /** Outbox budget in MB; default larger than the disk, so the disk fills before the budget. */
    'budget-mb': { type: 'string', default: '512' },
    durability: { type: 'string', default: 'process' },
    'drain-timeout-s': { type: 'string', default: '90' },
    /** How long to wait for command results and for outstanding PUBACKs once the cloud is back. */
    'wait-s': { type: 'string', default: '60' },
  },
  async run(a) {
    const mark = tempMark();
    const mb = num(a['fs-mb'], 24);
    const fs = smallFs(mb);
    const devices = [...makeDevices(3, 'telemetry', 'tel'), ...makeDevices(1, 'device.alarm', 'alm')];
    const budget = num(a['budget-mb'], 512) * 2 ** 20;
    const stack = await startStack({
      cloudBroker: 'embedded',
      devices,
      edgeDataDir: join(fs.dir, 'edge'),
      startCloud: false,
      durability: str(a.durability, 'process') as 'process' | 'power',
      outbox: {
        maxBytes: budget,
        lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: 0, ttlMs: 86_400_000 } },
      },
    });
    const ackLog: AckRecord[] = [];
    const runId = `f${Date.now().toString(36)}`;
    let crashes = 0;
    const pubs = startQos1Publishers({
      brokerUrl: stack.edgeBrokerUrl,
      devices,
      ratePerDevice: 'max',
      inflight: 16,
      payloadBytes: num(a['payload-bytes'], 1000),
      ackLog,
      runId,
      reconnectPeriodMs: 200,
    });
    let watching = true;
    const watch = setInterval(() => {
      if (watching && !stack.edge.running) crashes++;
    }, 200);
    try {
      await pubs.ready(30_000);
      // Fill: until acks stall for 3 s (disk full, or budget reached for non-droppable lanes) or fill-s passes.
      const deadline = Date.now() + num(a['fill-s'], 60) * 1000;
      let last = -1;
      let stalledSince = Date.now();
      while (Date.now() < deadline) {
        await sleep(500);
        const acked = pubs.ackedCount();
        if (acked !== last) {
          last = acked;
          stalledSince = Date.now();
        } else if (Date.now() - stalledSince > 3000) break;
      }
      const pctFull = usedPct(fs.dir);
      const st = await stack.edgeStatus();
      log(
        `disk ${pctFull}% used; acked ${pubs.ackedCount()}; outbox depth ${st.outbox.depth}, bytes ${st.outbox.bytes}`,
      );
      if (!stack.edge.running) throw new Error(`edge died while filling: ${stack.edge.logTail()}`);

      // Cloud back; commands while devices still publish.
      await stack.cloud.start();
      const nCmd = num(a.commands, 10);
      const waitMs = num(a['wait-s'], 60) * 1000;
      const sent = [];
      for (let i = 0; i < nCmd; i++)
        sent.push(await sendCommand(stack, { type: 'ping', payload: { echo: `full-${i}` } }));
      const done = await Promise.all(
        sent.map((c) => waitCommandDone(stack, c.id, waitMs).catch(() => undefined)),
      );
      const commandsOk = done.filter((c) => c?.status === 'ok').length;
      log(`commands: ${commandsOk}/${nCmd} ok`);
      const end = await pubs.stop({ timeoutMs: waitMs });
      log(`load stopped: ${JSON.stringify(end)}`);
      let notDrained = 0;
      try {
        await waitDrained(stack, num(a['drain-timeout-s'], 90) * 1000);
      } catch {
        const st2 = await stack.edgeStatus();
        notDrained = st2.outbox.depth;
        log(`NOT DRAINED: depth ${notDrained}; uplink ${JSON.stringify(st2.uplink)}`);
        const errs = stack.edge
          .logTail(2 ** 20)
          .split('\n')
          .filter((l) => /"level":50/.test(l));
        log(`edge error lines: ${errs.length}; last: ${errs.slice(-3).join('\n')}`);
      }
      const final = await stack.edgeStatus();
      const telemetryDropped = final.outbox.lanes.telemetry?.dropped ?? 0;
      const telemetryDropReasons = { ...(final.outbox.lanes.telemetry?.dropReasons ?? {}) };
      const storeReopens = (final as { store?: { reopens?: number } }).store?.reopens ?? 0;
      const rows = await stack.cloudEvents(['tx', 'event', 'telemetry']);
      watching = false;
      if (notDrained > 0) {
        // Stuck, not necessarily lost: count what the stopped edge still holds as "not lost".
        await stack.edge.kill('SIGKILL');
        try {
          const held = await readEdgeOutbox(stack.edgeDataDir);
          log(`edge outbox still holds ${held.length} events (counted as not lost)`);
          rows.push(...held);
        } catch (e) {
          log(`could not read the edge outbox on the full disk: ${(e as Error).message}`);
        }
      }
      const isOurs = ours(runId);
      const ev = verifyDelivery(
        ackLog.filter((x) => x.type === 'device.alarm'),
        rows.filter((r) => r.lane === 'event'),
        isOurs,
      );
      const tel = verifyDelivery(
        ackLog.filter((x) => x.type === 'telemetry'),
        rows.filter((r) => r.lane === 'telemetry'),
        isOurs,
      );
      const txIds = new Set(
        rows.filter((r) => r.lane === 'tx').map((r) => (r.payload as { commandId?: string })?.commandId),
      );
      const txLost = sent.filter((c) => !txIds.has(c.id)).length;
      const writeErrors = (stack.edge.logTail(50 * 2 ** 20).match(/outbox write failed/g) ?? []).length;
      return {
        fsMB: mb,
        fs: fs.kind,
        diskUsedPctAtFull: pctFull,
        ackedEvent: ev.acked,
        lostEvent: ev.lost,
        ackedTelemetry: tel.acked,
        lostTelemetry: tel.lost,
        telemetryDropped,
        telemetryDropReasons,
        storeReopens,
        uncountedTelemetryLoss: Math.max(0, tel.lost - telemetryDropped),
        commands: nCmd,
        commandsOk,
        txLost,
        duplicates: ev.duplicates + tel.duplicates,
        reordered: ev.reordered + tel.reordered,
        agentCrashes: crashes,
        notDrained,
        edgeWriteErrorsLogged: writeErrors,
      };
    } finally {
      clearInterval(watch);
      await pubs.close().catch(() => undefined);
      await stack.close();
      try {
        fs.unmount();
      } catch {
        // already gone
      }
      cleanupTempDirs(mark);
    }
  },
};
