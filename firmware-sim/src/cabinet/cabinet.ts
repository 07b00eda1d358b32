import { mulberry32, type Rng } from '../rng.ts';

/**
 * A simulated unmanned cabinet (docs/cabinet.md "Simulators"): a lock (the edge drives
 * the relay; power off = locked, fail-secure), a door with a reed switch that bounces on
 * every move, and RFID-tagged goods read by a reader that misses tags at random (each tag
 * in each round with probability `missRate`; an antenna fails a whole round with
 * `antennaFailRate`). The GPIO side is given as callbacks so the same cabinet drives
 * simulated lines (tests, torture) or the edge's onoff-free line interface.
 *
 * The reader answers like edge/src/rfid `inventoryNow()` (an InventoryRound), so the
 * edge's RFID inventory adapter is what gets tested.
 */
export interface SimCabinetOptions {
  missRate?: number;
  antennaFailRate?: number;
  /** Reed switch chatter: number of extra toggles and their spacing (ms) on each move. */
  bounceToggles?: number;
  bounceMs?: number;
  seed?: number;
  rng?: Rng;
  now: () => number;
}

export interface SimRound {
  tags: Map<string, { antenna: number; rssi: number; lastSeen: number }>;
  antennasOk: number[];
  antennasFailed: Array<{ antenna: number; code: string }>;
  startedAt: number;
  finishedAt: number;
  complete: boolean;
}

export class SimCabinet {
  /** EPC → SKU of the tagged goods inside. */
  readonly goods = new Map<string, string>();
  /** Physical door: 1 = open. */
  door: 0 | 1 = 0;
  /** Relay as last driven by the edge (1 = unlocked). */
  lock: 0 | 1 = 0;
  readonly rng: Rng;
  readonly stats = { rounds: 0, reads: 0, misses: 0, antennaFailures: 0, bounces: 0 };

  constructor(private readonly o: SimCabinetOptions) {
    this.rng = o.rng ?? mulberry32(o.seed ?? 1);
  }

  /** The door can open only while the relay is energised. */
  canOpen(): boolean {
    return this.lock === 1 || this.door === 1;
  }

  /**
   * The switch's raw values for one move, as (delayMs, value) steps: chatter first, then
   * the final value. The caller schedules them on its clock and sets the raw line.
   */
  moveDoor(to: 0 | 1): Array<[number, 0 | 1]> {
    this.door = to;
    const n = this.o.bounceToggles ?? Math.floor(this.rng() * 5);
    const gap = this.o.bounceMs ?? 3;
    const steps: Array<[number, 0 | 1]> = [];
    let t = 0;
    for (let i = 0; i < n; i++) {
      steps.push([t, (i % 2 === 0 ? to : 1 - to) as 0 | 1]);
      t += 1 + Math.floor(this.rng() * gap);
    }
    steps.push([t, to]);
    this.stats.bounces += n;
    return steps;
  }

  /** One inventory round over the cabinet's antenna(s). */
  async inventoryNow(): Promise<SimRound> {
    const at = this.o.now();
    this.stats.rounds++;
    if (this.rng() < (this.o.antennaFailRate ?? 0)) {
      this.stats.antennaFailures++;
      return {
        tags: new Map(),
        antennasOk: [],
        antennasFailed: [{ antenna: 1, code: 'EDGE_ERR_RFID_ANTENNA' }],
        startedAt: at,
        finishedAt: at,
        complete: false,
      };
    }
    const tags = new Map<string, { antenna: number; rssi: number; lastSeen: number }>();
    for (const epc of this.goods.keys()) {
      if (this.rng() < (this.o.missRate ?? 0.05)) {
        this.stats.misses++;
        continue;
      }
      this.stats.reads++;
      tags.set(epc, { antenna: 1, rssi: -45 - Math.floor(this.rng() * 30), lastSeen: at });
    }
    return { tags, antennasOk: [1], antennasFailed: [], startedAt: at, finishedAt: at, complete: true };
  }
}
