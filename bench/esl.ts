import type { esl } from '@storelink/protocols';
import { startEdge } from '../edge/src/agent.ts';
import { TagRenderer } from '../edge/src/esl/render.ts';
import { edgeConfig, FakeCloud, silentLogger } from '../edge/src/test-support/harness.ts';
import { EslWorld, SimClock, type TagFault } from '../firmware-sim/src/esl/index.ts';
import { log, num, rng, type Scenario } from './lib.ts';

export interface EslBenchResult {
  tags: number;
  aps: number;
  confirmed: number;
  /** tags that were meant to fail (fault mix) and did not confirm */
  faulty: number;
  /** live tags not confirmed when the run stopped (must be 0) */
  unconfirmed_live: number;
  sim_seconds_to_complete: number;
  max_wake_interval_s: number;
  /** max over live tags of (time to confirmation / that tag's wake interval); goal <= 1.1 */
  ratio_to_wake_interval: number;
  /** tag images rendered and hashed per second (the field; `_s` = per second as in `events_s`) */
  render_tags_s: number;
  /** wall seconds the campaign's rendering took */
  render_seconds: number;
  /** the same, per CPU second of this process (robust to other work sharing the cores) */
  render_tags_per_cpu_s: number;
  edge_cpu_ms_per_tag: number;
  wall_s: number;
  busy_answers: number;
  duplicate_completions: number;
  mix: string;
}

/**
 * `bench esl`: one price campaign over `--tags` simulated OEPL tags behind `--aps`
 * access points. The edge agent is real (its MQTT broker, ESL manager, outbox and
 * uplink to a stand-in cloud broker); the APs are MQTT devices; the radio runs on a
 * simulated clock that is also the agent's clock (house style 6), so ~10 minutes of
 * wake-ups take seconds. Tags wake every `--wake` seconds (the AP's idle nextCheckIn;
 * OEPL allows 40 .. 600 s) at a random phase; a BUSY tag retries within 1.2–3 s.
 * Radio: `--rate` bytes/s payload (OEPL ~5 kB/s) plus 140 ms per 4096 B block.
 *
 * Baselines in the same run: render rate is measured alone (render_tags_s: every tag
 * image of the campaign rendered and hashed, per second), and the time to confirm is divided by
 * each tag's own wake interval (a tag cannot confirm before it wakes).
 */
export const eslBench: Scenario<EslBenchResult> = {
  name: 'esl',
  description: 'price campaign over simulated OEPL tags/APs: time to confirm vs wake interval, render rate',
  options: {
    tags: { type: 'string', default: '10000' },
    aps: { type: 'string', default: '40' },
    wake: { type: 'string', default: '600' },
    rate: { type: 'string', default: '5000' },
    'fault-rate': { type: 'string', default: '0' },
    seed: { type: 'string', default: '1' },
  },
  mustBeZero: ['unconfirmed_live'],
  async run(args) {
    const nTags = num(args.tags, 10000);
    const nAps = num(args.aps, 40);
    const wakeS = num(args.wake, 600);
    const faultRate = num(args['fault-rate'], 0);
    const rand = rng(num(args.seed, 1));
    const wall0 = performance.now();

    // Tag mix: sizes 40% 1.54", 45% 2.9", 15% 4.2"; 20% of them red (2 bpp); 4 tags per SKU.
    const sizes: esl.EslSize[] = [];
    const tags = Array.from({ length: nTags }, (_, i) => {
      const r = rand();
      const size: esl.EslSize = r < 0.4 ? '1.54' : r < 0.85 ? '2.9' : '4.2';
      sizes.push(size);
      const bpp: esl.EslBpp = rand() < 0.2 ? 2 : 1;
      const faults: TagFault[] = [];
      if (rand() < faultRate) faults.push((['lost_block_ack', 'dup_complete'] as const)[i % 2]!);
      return {
        mac: i.toString(16).toUpperCase().padStart(16, '0'),
        ap: `ap-${i % nAps}`,
        size,
        bpp,
        faults,
        sku: `SKU${Math.floor(i / 4)}`,
      };
    });
    const items: esl.CampaignItem[] = tags.map((t, i) => ({
      tag: t.mac,
      size: t.size,
      bpp: t.bpp,
      ap: t.ap,
      content: {
        sku: t.sku,
        name: `Product ${t.sku}`,
        priceCents: 99 + ((i * 37) % 5000),
        currency: 'EUR',
        barcode: String(200000000000 + Math.floor(i / 4)),
        ...(i % 5 === 0 ? { promoCents: 79 + ((i * 13) % 3000), promoEndsAt: Date.UTC(2026, 11, 31) } : {}),
      },
    }));

    // Baseline: rendering alone.
    const renderer = new TagRenderer();
    await renderer.prepare();
    const r0 = performance.now();
    const c0 = process.cpuUsage();
    for (const it of items) renderer.render(it.size, it.bpp, it.content);
    const renderS = (performance.now() - r0) / 1000;
    const cpu = process.cpuUsage(c0);
    const renderCpuS = (cpu.user + cpu.system) / 1e6;
    log(`rendered ${nTags} tags in ${renderS.toFixed(2)} s (${Math.round(nTags / renderS)}/s)`);

    const cloud = new FakeCloud();
    await cloud.start();
    const clock = new SimClock(Date.now());
    const aps = Array.from({ length: nAps }, (_, i) => ({ id: `ap-${i}`, password: `pw-ap-${i}` }));
    const agent = await startEdge(
      edgeConfig(cloud, { devices: aps, cloud: { batchMaxEvents: 500 } as never }),
      { logger: silentLogger, now: clock.now },
    );
    const world = new EslWorld({
      brokerUrl: `mqtt://127.0.0.1:${agent.brokerPort}`,
      aps,
      clock,
      seed: num(args.seed, 1),
      bytesPerS: num(args.rate, 5000),
    });
    for (const t of tags)
      world.addTag({ mac: t.mac, ap: t.ap, size: t.size, bpp: t.bpp, intervalS: wakeS, faults: t.faults });
    try {
      await world.start();
      const start = clock.now();
      const cpu0 = agent.esl.stats().cpuMs;
      for (let i = 0; i < items.length; i += 500)
        await agent.esl.campaign({ campaignId: 'bench', items: items.slice(i, i + 500) });
      log(`campaign handed to ${nAps} APs`, agent.esl.stats());
      const want = new Map(items.map((it) => [it.tag, agent.esl.tags.get(it.tag)!.want!.dataVer]));
      const done = () => [...world.tags.values()].every((t) => t.shown === want.get(t.mac));
      let lastSweep = clock.now();
      let lastLog = clock.now();
      await world.run(start + 3 * wakeS * 1000, {
        sliceMs: 1000,
        stop: done,
        afterSlice: async () => {
          if (clock.now() - lastSweep >= 30_000) {
            lastSweep = clock.now();
            await agent.esl.sweep();
          }
          if (clock.now() - lastLog >= 60_000) {
            lastLog = clock.now();
            const st = agent.esl.stats();
            log(`sim ${Math.round((clock.now() - start) / 1000)} s: confirmed ${st.confirmed}/${nTags}`);
          }
        },
      });
      const st = agent.esl.stats();
      let maxRatio = 0;
      let last = start;
      let unconfirmed = 0;
      let busy = 0;
      for (const a of world.aps.values()) busy += a.stats.busyAnswers;
      for (const t of world.tags.values()) {
        if (t.shown !== want.get(t.mac)) {
          unconfirmed++;
          continue;
        }
        last = Math.max(last, t.shownAt);
        maxRatio = Math.max(maxRatio, (t.shownAt - start) / 1000 / t.intervalS);
      }
      return {
        tags: nTags,
        aps: nAps,
        confirmed: st.confirmed,
        faulty: 0,
        unconfirmed_live: unconfirmed,
        sim_seconds_to_complete: Math.round((last - start) / 100) / 10,
        max_wake_interval_s: wakeS,
        ratio_to_wake_interval: Math.round(maxRatio * 1000) / 1000,
        render_tags_s: Math.round(nTags / renderS),
        render_seconds: Math.round(renderS * 100) / 100,
        render_tags_per_cpu_s: Math.round(nTags / renderCpuS),
        edge_cpu_ms_per_tag: Math.round(((st.cpuMs - cpu0) / nTags) * 1000) / 1000,
        wall_s: Math.round((performance.now() - wall0) / 100) / 10,
        busy_answers: busy,
        duplicate_completions: st.duplicateCompletions,
        mix: `1.54":${sizes.filter((s) => s === '1.54').length} 2.9":${sizes.filter((s) => s === '2.9').length} 4.2":${sizes.filter((s) => s === '4.2').length}`,
      };
    } finally {
      await world.close();
      await agent.close();
      await cloud.close();
    }
  },
};
