import { gaussian, mulberry32, type Rng } from '../rng.ts';

/**
 * A simulated weight shelf (docs/cabinet.md "Simulators"): load-cell lanes read through an
 * HX711-style 24-bit converter (shared/reference/04-weight-door.md). What a real shelf
 * does to the edge's filter is here: Gaussian noise, rare spikes (a knock, a glitched
 * conversion), creep (the load cell's slow drift under a constant load, a random walk
 * bounded to ±`creepMaxG`), products whose weight varies around the nominal unit weight,
 * and equal-weight SKUs (two 355 g cans) on neighbouring lanes.
 */
export interface SimLaneSpec {
  id: string;
  sku: string;
  unitGrams: number;
  count: number;
  /** The empty lane (tray) weight in grams. */
  trayGrams?: number;
}

export interface SimShelfOptions {
  lanes: readonly SimLaneSpec[];
  /** Grams per raw count (the edge's calibration must match). */
  gramsPerCount?: number;
  /** Raw offset of the unloaded cell. */
  offsetCounts?: number;
  noiseG?: number;
  spikeRate?: number;
  /** Creep random-walk step per simulated minute (g) and its bound. */
  creepPerMinG?: number;
  creepMaxG?: number;
  /** Relative spread of one item's weight around the unit weight. */
  itemSpread?: number;
  seed?: number;
  rng?: Rng;
}

interface LaneState {
  spec: SimLaneSpec;
  items: number[];
  creep: number;
  /** Time of the last creep step (undefined before the first reading). */
  creepAt: number | undefined;
}

export class SimWeightShelf {
  private readonly lanes = new Map<string, LaneState>();
  private readonly rng: Rng;
  readonly gramsPerCount: number;
  readonly offsetCounts: number;

  constructor(private readonly o: SimShelfOptions) {
    this.rng = o.rng ?? mulberry32(o.seed ?? 1);
    this.gramsPerCount = o.gramsPerCount ?? 0.01;
    this.offsetCounts = o.offsetCounts ?? 8_000;
    for (const spec of o.lanes) {
      const st: LaneState = { spec, items: [], creep: 0, creepAt: undefined };
      for (let i = 0; i < spec.count; i++) st.items.push(this.itemWeight(spec));
      this.lanes.set(spec.id, st);
    }
  }

  private itemWeight(spec: SimLaneSpec): number {
    return spec.unitGrams * (1 + (this.o.itemSpread ?? 0.005) * gaussian(this.rng));
  }

  laneIds(): string[] {
    return [...this.lanes.keys()];
  }

  spec(lane: string): SimLaneSpec {
    return this.lanes.get(lane)!.spec;
  }

  count(lane: string): number {
    return this.lanes.get(lane)!.items.length;
  }

  /** Takes `n` items; returns how many were there to take. */
  take(lane: string, n = 1): number {
    const st = this.lanes.get(lane)!;
    const k = Math.min(n, st.items.length);
    st.items.splice(st.items.length - k, k);
    return k;
  }

  /** Puts `n` items of `unitGrams` (default: the lane's own SKU) on the lane. */
  put(lane: string, n = 1, unitGrams?: number): void {
    const st = this.lanes.get(lane)!;
    for (let i = 0; i < n; i++)
      st.items.push(this.itemWeight(unitGrams === undefined ? st.spec : { ...st.spec, unitGrams }));
  }

  /** True grams on the lane (tray + items), without creep or noise. */
  grams(lane: string): number {
    const st = this.lanes.get(lane)!;
    return (st.spec.trayGrams ?? 0) + st.items.reduce((s, w) => s + w, 0);
  }

  /** One raw HX711 reading of `lane` at time `t` (ms). */
  read(lane: string, t: number): number {
    const st = this.lanes.get(lane)!;
    const minutes = st.creepAt === undefined ? 0 : Math.max(0, (t - st.creepAt) / 60_000);
    if (st.creepAt === undefined) st.creepAt = t;
    if (minutes > 0) {
      const max = this.o.creepMaxG ?? 15;
      st.creep += (this.o.creepPerMinG ?? 0.3) * Math.sqrt(minutes) * gaussian(this.rng);
      st.creep = Math.max(-max, Math.min(max, st.creep));
      st.creepAt = t;
    }
    let g = this.grams(lane) + st.creep + (this.o.noiseG ?? 1) * gaussian(this.rng);
    if (this.rng() < (this.o.spikeRate ?? 0.01)) g += (this.rng() < 0.5 ? -1 : 1) * (200 + this.rng() * 2000);
    return Math.round(g / this.gramsPerCount) + this.offsetCounts;
  }
}
