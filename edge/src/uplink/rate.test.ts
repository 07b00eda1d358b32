import { describe, expect, it } from 'vitest';
import { DrainRate } from './rate.ts';

describe('DrainRate', () => {
  it('averages acknowledged events over a sliding window and estimates time to drain', () => {
    let t = 1_000_000;
    const r = new DrainRate(() => t, 10_000);
    expect(r.perSecond()).toBe(0);
    expect(r.etaSeconds(0)).toBe(0);
    expect(r.etaSeconds(5)).toBeNull();
    r.record(50);
    t += 5_000;
    r.record(50);
    expect(r.perSecond()).toBe(10);
    expect(r.etaSeconds(100)).toBe(10);
    t += 6_000; // the first sample leaves the window
    expect(r.perSecond()).toBe(5);
    t += 10_000;
    expect(r.perSecond()).toBe(0);
  });
});
