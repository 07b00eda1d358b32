import { rmSync } from 'node:fs';
import { buildEdgeBundle } from '../../test/helpers/edge-bundle.ts';
import { sleep } from '../../test/helpers/ports.ts';
import { makeDevices, type Stack, startStack } from '../../test/helpers/stack.ts';
import { cleanupTempDirs, tempMark } from '../../test/helpers/tmp.ts';
import { log, num, rng, type Scenario, str } from '../lib.ts';
import { type DeliveryReport, verifyDelivery } from '../../test/helpers/verify.ts';
import {
  type AckRecord,
  checkCloud,
  ours,
  readEdgeOutbox,
  startQos1Publishers,
  waitDrained,
} from './common.ts';

async function gapCount(stack: Stack): Promise<number> {
  const r = await stack.cloudApi(`/api/v1/gateways/${stack.gateway}/gaps`);
  if (!r.ok) return -1;
  const body = (await r.json()) as { items?: unknown[] };
  if (body.items?.length) log('cloud gap records:', body.items);
  return body.items?.length ?? 0;
}

export interface CrashResult {
  kills: number;
  acked: number;
  stored: number;
  lost: number;
  duplicates: number;
  reordered: number;
  seqGaps: number;
  /** Sum of what the edge's recovery reported lost over all restarts. */
  edgeReportedLost: number;
  /** Gap records in the cloud (seqs the edge declared dropped). */
  cloudGaps: number;
  unackedAtEnd: number;
  drainSeconds: number;
  seconds: number;
  durability: string;
  cloudBroker: string;
  edgePeakRssMB: number;
  lostExamples?: string[];
}

/**
 * `torture crash`: a real edge process under sustained QoS1 device load is SIGKILLed at
 * random moments and restarted, `--kills` times. Devices record every PUBACK; at the
 * end every PUBACKed message must be in the cloud store exactly once and in device
 * order within its lane [OUTBOX-WRITE-1] [INGEST-DEDUPE-1] [OUTBOX-ACK-2].
 */
export const crash: Scenario<CrashResult> = {
  name: 'crash',
  description:
    'SIGKILL the edge at random moments under QoS1 load; check nothing PUBACKed is lost/duplicated/reordered',
  mustBeZero: ['lost', 'duplicates', 'reordered'],
  options: {
    kills: { type: 'string', default: '200' },
    devices: { type: 'string', default: '8' },
    rate: { type: 'string', default: '100', short: 'r' },
    inflight: { type: 'string', default: '16' },
    'payload-bytes': { type: 'string', default: '200' },
    'min-up-ms': { type: 'string', default: '150' },
    'max-up-ms': { type: 'string', default: '1200' },
    durability: { type: 'string', default: 'process' },
    'cloud-broker': { type: 'string', default: 'embedded' },
    /** `cloud`: check the cloud store; `edge`: run without a cloud and check the edge outbox itself. */
    verify: { type: 'string', default: 'cloud' },
    seed: { type: 'string' },
  },
  async run(a) {
    const mark = tempMark();
    const kills = num(a.kills, 200);
    const seed = num(a.seed, Date.now() % 1_000_000);
    const random = rng(seed);
    const nDev = num(a.devices, 8);
    const durability = str(a.durability, 'process') as 'process' | 'power';
    const cloudBroker = str(a['cloud-broker'], 'embedded') as 'embedded' | 'mosquitto';
    const minUp = num(a['min-up-ms'], 150);
    const maxUp = num(a['max-up-ms'], 1200);
    log(
      `crash torture: kills=${kills} devices=${nDev} seed=${seed} durability=${durability} broker=${cloudBroker}`,
    );
    // Half the devices on the telemetry lane, half on the event lane.
    const devices = [
      ...makeDevices(Math.ceil(nDev / 2), 'telemetry', 'tel'),
      ...makeDevices(Math.floor(nDev / 2), 'device.alarm', 'alm'),
    ];
    const t0 = Date.now();
    const verify = str(a.verify, 'cloud') as 'cloud' | 'edge';
    // The bundled edge restarts in a fraction of the tsx bin's time: 200 restarts fit in minutes.
    const edgeBin = await buildEdgeBundle();
    const stack = await startStack({
      cloudBroker,
      devices,
      durability,
      startCloud: verify === 'cloud',
      edgeBin,
    });
    const ackLog: AckRecord[] = [];
    const runId = `c${seed.toString(36)}`;
    const pubs = startQos1Publishers({
      brokerUrl: stack.edgeBrokerUrl,
      devices,
      ratePerDevice: num(a.rate, 100),
      inflight: num(a.inflight, 16),
      payloadBytes: num(a['payload-bytes'], 200),
      ackLog,
      runId,
      reconnectPeriodMs: 100,
    });
    try {
      await pubs.ready(30_000);
      let reportedLost = 0;
      for (let k = 1; k <= kills; k++) {
        await sleep(minUp + random() * (maxUp - minUp));
        const before = pubs.stats();
        await stack.edge.kill('SIGKILL');
        const tKill = Date.now();
        await stack.edge.start();
        const rec = (await stack.edgeStatus()).recovery;
        if (rec.lostCount > 0) {
          reportedLost += rec.lostCount;
          log(`kill ${k}: edge reports lost after restart: ${rec.message}`);
        }
        if (k % 10 === 0 || k === kills) {
          log(
            `kill ${k}/${kills}: acked=${before.acked} outstanding=${before.outstanding} restart=${Date.now() - tKill}ms rss=${(stack.edge.peakRssBytes / 2 ** 20).toFixed(0)}MB`,
          );
        }
      }
      log('kills done; stopping load and waiting for every outstanding PUBACK');
      const end = await pubs.stop({ timeoutMs: 60_000 });
      log(`load stopped: ${JSON.stringify(end)}`);
      let drainSeconds = 0;
      let r: DeliveryReport;
      if (verify === 'cloud') {
        drainSeconds = await waitDrained(stack, 120_000);
        r = await checkCloud(stack, ackLog, runId);
      } else {
        await stack.edge.kill('SIGKILL');
        r = verifyDelivery(ackLog, await readEdgeOutbox(stack.edgeDataDir), ours(runId));
      }
      const result: CrashResult = {
        kills,
        acked: r.acked,
        stored: r.stored,
        lost: r.lost,
        duplicates: r.duplicates,
        reordered: r.reordered,
        seqGaps: r.seqGaps,
        unackedAtEnd: end.outstanding,
        edgeReportedLost: reportedLost,
        cloudGaps: verify === 'cloud' ? await gapCount(stack) : 0,
        drainSeconds,
        seconds: (Date.now() - t0) / 1000,
        durability,
        cloudBroker: verify === 'cloud' ? cloudBroker : 'none (edge outbox checked)',
        edgePeakRssMB: Math.round(stack.edge.peakRssBytes / 2 ** 20),
      };
      if (r.lost) result.lostExamples = r.lostExamples;
      return result;
    } finally {
      await pubs.close().catch(() => undefined);
      await stack.close();
      cleanupTempDirs(mark);
      rmSync(edgeBin, { force: true });
    }
  },
};
