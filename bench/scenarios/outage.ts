import { sleep } from '../../test/helpers/ports.ts';
import { makeDevices, startStack } from '../../test/helpers/stack.ts';
import { cleanupTempDirs, tempMark } from '../../test/helpers/tmp.ts';
import { log, num, type Scenario, str } from '../lib.ts';
import { type AckRecord, checkCloud, startQos1Publishers, waitDrained } from './common.ts';

export interface OutageResult {
  acked: number;
  stored: number;
  lost: number;
  duplicates: number;
  reordered: number;
  seqGaps: number;
  outageSeconds: number;
  edgeRestartsDuringOutage: number;
  /** Outbox depth when the broker came back. */
  backlog: number;
  /** Broker back → edge outbox empty (every event committed by the cloud). */
  drainSeconds: number;
  drain_events_s: number;
  cloudBroker: string;
}

/**
 * `torture outage`: the cloud broker (Mosquitto by default) is stopped while devices keep
 * publishing; the edge agent is SIGKILLed and restarted during the outage; the broker
 * comes back. Nothing PUBACKed may be lost, duplicated or reordered, and the backlog
 * must drain [OUTBOX-ACK-1] [OUTBOX-ACK-2].
 */
export const outage: Scenario<OutageResult> = {
  name: 'outage',
  description:
    'stop the cloud broker under load, restart the edge mid-outage, bring the broker back; check and time the drain',
  mustBeZero: ['lost', 'duplicates', 'reordered'],
  options: {
    'outage-s': { type: 'string', default: '20' },
    'before-s': { type: 'string', default: '3' },
    devices: { type: 'string', default: '8' },
    rate: { type: 'string', default: '200' },
    restarts: { type: 'string', default: '1' },
    'cloud-broker': { type: 'string', default: 'mosquitto' },
    durability: { type: 'string', default: 'process' },
  },
  async run(a) {
    const mark = tempMark();
    const outageS = num(a['outage-s'], 20);
    const restarts = num(a.restarts, 1);
    const cloudBroker = str(a['cloud-broker'], 'mosquitto') as 'mosquitto' | 'embedded';
    const nDev = num(a.devices, 8);
    const devices = [
      ...makeDevices(Math.ceil(nDev / 2), 'telemetry', 'tel'),
      ...makeDevices(Math.floor(nDev / 2), 'device.alarm', 'alm'),
    ];
    const stack = await startStack({
      cloudBroker,
      devices,
      durability: str(a.durability, 'process') as 'process' | 'power',
    });
    const ackLog: AckRecord[] = [];
    const runId = `o${Date.now().toString(36)}`;
    const pubs = startQos1Publishers({
      brokerUrl: stack.edgeBrokerUrl,
      devices,
      ratePerDevice: num(a.rate, 200),
      inflight: 16,
      payloadBytes: 200,
      ackLog,
      runId,
    });
    try {
      await pubs.ready(30_000);
      await sleep(num(a['before-s'], 3) * 1000);
      // The outage: stop the broker (embedded mode: stop the whole cloud).
      const stopBroker = () => (stack.mosquitto ? stack.mosquitto.stop() : stack.cloud.stop());
      const startBroker = () => (stack.mosquitto ? stack.mosquitto.start() : stack.cloud.start());
      await stopBroker();
      const tDown = Date.now();
      log(`cloud broker down (acked so far ${pubs.stats().acked})`);
      for (let i = 1; i <= restarts; i++) {
        await sleep((outageS * 1000) / (restarts + 1));
        await stack.edge.kill('SIGKILL');
        await stack.edge.start();
        log(
          `edge restarted during the outage (${i}/${restarts}); depth ${(await stack.edgeStatus()).outbox.depth}`,
        );
      }
      await sleep(Math.max(0, tDown + outageS * 1000 - Date.now()));
      const end = await pubs.stop({ timeoutMs: 60_000 });
      const backlog = (await stack.edgeStatus()).outbox.depth;
      log(`load stopped (${JSON.stringify(end)}); backlog ${backlog}; broker back up`);
      await startBroker();
      const outageSeconds = (Date.now() - tDown) / 1000;
      const drainSeconds = await waitDrained(stack, 300_000);
      const r = await checkCloud(stack, ackLog, runId);
      return {
        acked: r.acked,
        stored: r.stored,
        lost: r.lost,
        duplicates: r.duplicates,
        reordered: r.reordered,
        seqGaps: r.seqGaps,
        outageSeconds,
        edgeRestartsDuringOutage: restarts,
        backlog,
        drainSeconds,
        drain_events_s: Math.round(backlog / Math.max(drainSeconds, 0.001)),
        cloudBroker,
      };
    } finally {
      await pubs.close().catch(() => undefined);
      await stack.close();
      cleanupTempDirs(mark);
    }
  },
};
