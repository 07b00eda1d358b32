import { describe, expect, it } from 'vitest';
import { classifyDelta, countOnLane } from './planogram.ts';
import { WeightLane } from './lane.ts';
import { WeightShelf } from './shelf.ts';

/** Feeds `n` readings of `grams` (+ optional alternating noise) and returns the changes seen. */
function hold(lane: WeightLane, grams: number, n: number, t0: number, noise = 0) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const ch = lane.feed(grams + (i % 2 ? noise : -noise), t0 + i * 100);
    if (ch) out.push(ch);
  }
  return out;
}

describe('WeightLane', () => {
  it('reports one take with its delta after the value settles [WEIGHT-EVENT-1]', () => {
    const lane = new WeightLane({ id: 'L1', thresholdG: 20 });
    expect(hold(lane, 1000, 10, 0, 0.5)).toEqual([]);
    const ch = hold(lane, 670, 10, 1000, 0.5);
    expect(ch).toHaveLength(1);
    expect(ch[0]!.deltaGrams).toBeCloseTo(-330, 0);
    expect(lane.netGrams).toBeCloseTo(670, 0);
  });

  it('a spike (single bad reading) never makes an event [WEIGHT-FILTER-1]', () => {
    const lane = new WeightLane({ id: 'L1', thresholdG: 20 });
    hold(lane, 500, 10, 0);
    const spikes = [500, 500, 9000, 500, 500, 500, -4000, 500, 500, 500].flatMap(
      (g, i) => lane.feed(g, 2000 + i * 100) ?? [],
    );
    expect(spikes).toEqual([]);
  });

  it('unstable readings (hand on the shelf) make no event until stable [WEIGHT-STABLE-1]', () => {
    const lane = new WeightLane({ id: 'L1', thresholdG: 20, stableTolG: 2 });
    hold(lane, 500, 10, 0);
    // swinging ±40 g: never stable
    expect(hold(lane, 300, 30, 1000, 40)).toEqual([]);
    expect(lane.stable).toBe(false);
    expect(hold(lane, 300, 10, 5000)).toHaveLength(1);
  });

  it('creep below the threshold is followed, never a take; a later take keeps its true size [WEIGHT-DRIFT-1]', () => {
    const lane = new WeightLane({ id: 'L1', thresholdG: 20 });
    let g = 1000;
    const changes = [];
    for (let i = 0; i < 600; i++) {
      g -= 0.1; // 60 g of creep over a minute: 3x the threshold
      const c = lane.feed(g, i * 100);
      if (c) changes.push(c);
    }
    expect(changes).toEqual([]);
    expect(lane.drift).toBeLessThan(-50);
    expect(lane.netGrams).toBeCloseTo(g, 0);
    // a real take after the creep is still seen with its true size
    const take = hold(lane, g - 250, 10, 70_000);
    expect(take[0]!.deltaGrams).toBeCloseTo(-250, 0);
  });

  it('a lane counted with creep inside the allowance still counts; beyond it is unknown, not guessed', () => {
    const plan = { lane: 'L', skus: [{ sku: 'chips', unitGrams: 75 }] };
    expect(countOnLane(300 + 12, plan)).toEqual({ kind: 'match', sku: 'chips', count: 4 });
    expect(countOnLane(300 + 37, plan)).toEqual({ kind: 'unknown' });
  });

  it('tare makes the empty lane zero; raw counts are scaled', () => {
    const lane = new WeightLane({ id: 'L1', gramsPerCount: 0.01, tareCounts: 0, thresholdG: 20 });
    hold(lane, 84_000, 10, 0); // 840 g of shelf board
    expect(lane.tare()).toBe(true);
    hold(lane, 84_000, 10, 1000);
    expect(lane.netGrams).toBeCloseTo(0, 1);
    const ch = hold(lane, 84_000 + 35_500, 10, 2000);
    expect(ch[0]!.deltaGrams).toBeCloseTo(355, 0);
  });

  it('non-numeric readings are counted and ignored', () => {
    const lane = new WeightLane({ id: 'L1' });
    expect(lane.feed(Number.NaN, 0)).toBeUndefined();
    expect(lane.counters.rejected).toBe(1);
  });
});

describe('planogram classification [WEIGHT-AMBIG-1]', () => {
  const plan = {
    lane: 'L1',
    skus: [
      { sku: 'cola-330', unitGrams: 355 },
      { sku: 'soda-330', unitGrams: 355 },
      { sku: 'water-500', unitGrams: 520 },
    ],
  };
  it('one SKU and count that explain the delta', () => {
    expect(classifyDelta(-522, plan)).toEqual({ kind: 'match', sku: 'water-500', count: 1 });
  });
  it('two SKUs of the same weight: reported as ambiguous with both, not guessed', () => {
    const r = classifyDelta(-356, plan);
    expect(r.kind).toBe('ambiguous');
    if (r.kind === 'ambiguous')
      expect(r.candidates.map((c) => c.sku).sort()).toEqual(['cola-330', 'soda-330']);
  });
  it('nothing fits: unknown', () => {
    expect(classifyDelta(-90, plan)).toEqual({ kind: 'unknown' });
  });
  it('counts a single-SKU lane from its net weight', () => {
    expect(countOnLane(1776, { lane: 'L', skus: [{ sku: 'a', unitGrams: 355 }] })).toEqual({
      kind: 'match',
      sku: 'a',
      count: 5,
    });
  });
});

describe('WeightShelf', () => {
  it('emits take and return with the likely SKU per lane', () => {
    const shelf = new WeightShelf('shelf-1', [
      { id: 'A', thresholdG: 100, skus: [{ sku: 'cola', unitGrams: 355 }] },
      {
        id: 'B',
        thresholdG: 100,
        skus: [
          { sku: 'cola', unitGrams: 355 },
          { sku: 'soda', unitGrams: 355 },
        ],
      },
    ]);
    const seen: string[] = [];
    shelf.onEvent((e) => seen.push(`${e.kind}:${e.lane}:${JSON.stringify(e.classification)}`));
    for (let i = 0; i < 10; i++) {
      shelf.feed('A', 1420, i);
      shelf.feed('B', 710, i);
    }
    for (let i = 0; i < 10; i++) {
      shelf.feed('A', 1065, 100 + i);
      shelf.feed('B', 1065, 100 + i);
    }
    shelf.feed('Z', 1, 0);
    expect(seen).toEqual([
      'take:A:{"kind":"match","sku":"cola","count":1}',
      expect.stringMatching(/^return:B:\{"kind":"ambiguous"/),
    ]);
    expect(shelf.counters.unknownLane).toBe(1);
    expect(shelf.counts().find((c) => c.lane === 'A')!.result).toEqual({
      kind: 'match',
      sku: 'cola',
      count: 3,
    });
  });
});
