/**
 * One load-cell lane of a weight shelf (HX711-style 24-bit readings, 10 or 80 Hz;
 * shared/reference/04-weight-door.md), turned into stable weights and take/return
 * changes (docs/cabinet.md "Weight shelves"):
 *
 * - [WEIGHT-FILTER-1] each raw reading is converted to grams (scale, tare offset) and
 *   passed through a running median of `window` readings, which removes single spikes
 *   (a knock, an HX711 glitch) without the lag of a long average.
 * - [WEIGHT-STABLE-1] the lane is stable when the last `stableSamples` medians lie within
 *   `stableTolG` of each other; only stable values are compared (a hand resting on the
 *   shelf or a swinging product never makes an event).
 * - [WEIGHT-DRIFT-1] a stable value that differs from the last level by less than
 *   `thresholdG` is creep or temperature drift, not an item: the level follows it, so slow
 *   creep never adds up to a false take and a change's delta is measured from where the
 *   lane really was. The net weight keeps the creep: integrating the small differences
 *   into a drift estimate turned averaging noise into a random walk (tens of grams after
 *   a day of sampling in the cabinet torture run, docs/cabinet.md), so counting allows
 *   for a bounded creep instead (planogram.ts `creepG`) and tare resets it.
 * - [WEIGHT-EVENT-1] a stable change of at least `thresholdG` is one change event with
 *   its signed delta; the level moves to the new value.
 * - Tare: `tare()` makes the current stable weight the zero (empty lane) and clears the
 *   drift.
 */
export interface WeightLaneConfig {
  id: string;
  /** Grams per raw count (calibration); 1 when readings are already grams. */
  gramsPerCount?: number;
  /** Raw reading of the empty lane. */
  tareCounts?: number;
  window?: number;
  stableSamples?: number;
  stableTolG?: number;
  /** Smallest change that is an item (half the lightest unit weight is a good value). */
  thresholdG?: number;
}

export interface LaneChange {
  lane: string;
  at: number;
  deltaGrams: number;
  /** Level (grams above tare, drift removed) after the change. */
  netGrams: number;
}

export class WeightLane {
  readonly id: string;
  private readonly gramsPerCount: number;
  private tareCounts: number;
  private readonly window: number;
  private readonly stableSamples: number;
  private readonly stableTolG: number;
  readonly thresholdG: number;
  private readonly raw: number[] = [];
  private readonly medians: number[] = [];
  /** Last accepted stable weight (grams above tare, drift included). */
  private level: number | undefined;
  /** Level right after the last change (or the first stable value). */
  private eventLevel: number | undefined;
  private stableNow = false;
  readonly counters = { readings: 0, changes: 0, driftUpdates: 0, rejected: 0 };

  constructor(c: WeightLaneConfig) {
    this.id = c.id;
    this.gramsPerCount = c.gramsPerCount ?? 1;
    this.tareCounts = c.tareCounts ?? 0;
    this.window = c.window ?? 5;
    this.stableSamples = c.stableSamples ?? 5;
    this.stableTolG = c.stableTolG ?? 2;
    this.thresholdG = c.thresholdG ?? 10;
  }

  /** Feeds one raw reading; returns a change when a new stable level differs by >= threshold. */
  feed(rawCounts: number, at: number): LaneChange | undefined {
    if (!Number.isFinite(rawCounts)) {
      this.counters.rejected++;
      return undefined;
    }
    this.counters.readings++;
    const grams = (rawCounts - this.tareCounts) * this.gramsPerCount;
    this.raw.push(grams);
    if (this.raw.length > this.window) this.raw.shift();
    this.medians.push(median(this.raw));
    if (this.medians.length > this.stableSamples) this.medians.shift();
    this.stableNow = this.medians.length >= this.stableSamples && spread(this.medians) <= this.stableTolG;
    if (!this.stableNow) return undefined;
    const value = mean(this.medians);
    if (this.level === undefined) {
      this.level = value;
      this.eventLevel = value;
      return undefined;
    }
    const d = value - this.level;
    if (Math.abs(d) < this.thresholdG) {
      // [WEIGHT-DRIFT-1] creep: the level follows it, so it never adds up to a change.
      this.level = value;
      this.counters.driftUpdates++;
      return undefined;
    }
    // [WEIGHT-EVENT-1]
    this.level = value;
    this.eventLevel = value;
    this.counters.changes++;
    return { lane: this.id, at, deltaGrams: round1(d), netGrams: round1(value) };
  }

  get stable(): boolean {
    return this.stableNow;
  }

  /** Net weight on the lane (grams above tare, creep included); undefined before the first stable value. */
  get netGrams(): number | undefined {
    return this.level;
  }

  /** Creep followed since the last change (informational; counting allows for it, see planogram.ts). */
  get drift(): number {
    return this.level === undefined || this.eventLevel === undefined ? 0 : this.level - this.eventLevel;
  }

  /** The current stable value becomes zero (call with the lane empty). */
  tare(): boolean {
    if (!this.stableNow || this.level === undefined) return false;
    this.tareCounts += this.level / this.gramsPerCount;
    this.level = 0;
    this.eventLevel = 0;
    this.raw.length = 0;
    this.medians.length = 0;
    return true;
  }
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}
function spread(xs: readonly number[]): number {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const x of xs) {
    if (x < lo) lo = x;
    if (x > hi) hi = x;
  }
  return hi - lo;
}
function mean(xs: readonly number[]): number {
  return xs.reduce((s, x) => s + x, 0) / xs.length;
}
const round1 = (x: number) => Math.round(x * 10) / 10;
