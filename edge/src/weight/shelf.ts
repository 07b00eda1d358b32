import { type LaneChange, WeightLane, type WeightLaneConfig } from './lane.ts';
import {
  type Classification,
  classifyDelta,
  countOnLane,
  type LanePlanogram,
  type Tolerance,
} from './planogram.ts';

/**
 * A weight shelf: lanes with their planogram. Raw readings come in per lane (from MQTT
 * `dev/{shelf}/evt/weight.raw` or a serial HX711 bridge; the transport only calls
 * `feed`); stable changes come out as `take`/`return` with the likely SKU and count, or
 * ambiguous [WEIGHT-AMBIG-1] (docs/cabinet.md).
 */
export interface ShelfLaneConfig extends WeightLaneConfig {
  skus: LanePlanogram['skus'];
  maxCount?: number;
}

export interface ShelfEvent {
  kind: 'take' | 'return';
  shelf: string;
  lane: string;
  at: number;
  deltaGrams: number;
  classification: Classification;
}

export class WeightShelf {
  readonly lanes = new Map<string, { lane: WeightLane; plan: LanePlanogram }>();
  private readonly listeners = new Set<(e: ShelfEvent) => void>();
  readonly counters = { unknownLane: 0, events: 0, ambiguous: 0, unknown: 0 };

  constructor(
    readonly id: string,
    lanes: readonly ShelfLaneConfig[],
    private readonly tol?: Tolerance,
  ) {
    for (const c of lanes) {
      this.lanes.set(c.id, {
        lane: new WeightLane(c),
        plan: { lane: c.id, skus: c.skus, ...(c.maxCount !== undefined ? { maxCount: c.maxCount } : {}) },
      });
    }
  }

  onEvent(fn: (e: ShelfEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /** One raw reading of one lane. Unknown lanes are counted and ignored. */
  feed(laneId: string, raw: number, at: number): ShelfEvent | undefined {
    const l = this.lanes.get(laneId);
    if (!l) {
      this.counters.unknownLane++;
      return undefined;
    }
    const ch = l.lane.feed(raw, at);
    return ch ? this.emit(ch, l.plan) : undefined;
  }

  private emit(ch: LaneChange, plan: LanePlanogram): ShelfEvent {
    const classification = classifyDelta(ch.deltaGrams, plan, this.tol);
    if (classification.kind === 'ambiguous') this.counters.ambiguous++;
    if (classification.kind === 'unknown') this.counters.unknown++;
    this.counters.events++;
    const e: ShelfEvent = {
      kind: ch.deltaGrams < 0 ? 'take' : 'return',
      shelf: this.id,
      lane: ch.lane,
      at: ch.at,
      deltaGrams: ch.deltaGrams,
      classification,
    };
    for (const f of [...this.listeners]) f(e);
    return e;
  }

  /** True when every lane has a stable value (a count is only taken on a quiet shelf). */
  allStable(): boolean {
    for (const { lane } of this.lanes.values()) if (!lane.stable) return false;
    return true;
  }

  /** Per lane: the count of items from the net weight, or why it cannot be counted. */
  counts(): Array<{
    lane: string;
    netGrams: number | undefined;
    result: ReturnType<typeof countOnLane> | undefined;
  }> {
    return [...this.lanes.values()].map(({ lane, plan }) => {
      const net = lane.netGrams;
      return {
        lane: lane.id,
        netGrams: net,
        result: net === undefined ? undefined : countOnLane(net, plan, this.tol),
      };
    });
  }
}
