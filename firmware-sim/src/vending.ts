import {
  type ConfigKey,
  intRange,
  type Metrics,
  numRange,
  SimDevice,
  type SimDeviceOptions,
} from './device.ts';
import { gaussian } from './rng.ts';

/**
 * A vending machine's telemetry board: slots with stock counts, sales at a Poisson
 * rate that empty them, a refrigerated cabinet, and the service door. It reports what
 * vending telemetry gateways report (sales since visit, stock levels, temperature,
 * door; shared/reference/02-mdb.md: Nayax/televend fields and EVA-DTS PA/EA records)
 * and raises LOW_STOCK when the emptiest slot is at or under `lowStockThreshold`,
 * cleared by a refill.
 */
export interface VendingOptions extends SimDeviceOptions {
  slots?: number;
  /** Items per slot when full. */
  capacity?: number;
  /** Initial stock of every slot (default: full). */
  initialStock?: number;
  /** Average sales per simulated hour (0 = only `sell()`). */
  salesPerHour?: number;
  lowStockThreshold?: number;
  setpointC?: number;
}

const STEP_S = 10;
const MAX_GAP_S = 6 * 3600;

export class SimVending extends SimDevice {
  readonly kind = 'vending';
  private readonly stock: number[];
  private readonly capacity: number;
  private soldTotal = 0;
  private salesPerHour: number;
  private lowStockThreshold: number;
  private readonly setpointC: number;
  private tempC: number;
  private door: 'open' | 'closed' = 'closed';
  private simTime: number | null = null;

  constructor(opts: VendingOptions) {
    super(opts);
    const slots = opts.slots ?? 12;
    this.capacity = opts.capacity ?? 8;
    this.stock = Array.from({ length: slots }, () => opts.initialStock ?? this.capacity);
    this.salesPerHour = opts.salesPerHour ?? 6;
    this.lowStockThreshold = opts.lowStockThreshold ?? 1;
    this.setpointC = opts.setpointC ?? 6;
    this.tempC = this.setpointC + gaussian(this.rng) * 0.3;
  }

  /** Sells one item from `slot` (default: a random stocked slot); null when empty. */
  sell(slot?: number): number | null {
    const s = slot ?? this.pickStockedSlot();
    if (s === null || s < 0 || s >= this.stock.length || (this.stock[s] ?? 0) <= 0) return null;
    this.stock[s]!--;
    this.soldTotal++;
    this.evaluateAlarms();
    return s;
  }

  /** A service visit: door open, every slot filled, door closed; reported at once. */
  refill(): void {
    this.door = 'open';
    this.stock.fill(this.capacity);
    this.publishTelemetry();
    this.door = 'closed';
    this.evaluateAlarms();
    this.publishTelemetry();
  }

  stockLevels(): readonly number[] {
    return this.stock;
  }

  protected override extraConfigKeys(): Record<string, ConfigKey> {
    return {
      lowStockThreshold: {
        get: () => this.lowStockThreshold,
        check: intRange(0, this.capacity),
        set: (v) => {
          this.lowStockThreshold = v as number;
          this.evaluateAlarms();
        },
      },
      salesPerHour: {
        get: () => this.salesPerHour,
        check: numRange(0, 100_000),
        set: (v) => (this.salesPerHour = v as number),
      },
    };
  }

  private pickStockedSlot(): number | null {
    const stocked = this.stock.flatMap((n, i) => (n > 0 ? [i] : []));
    if (stocked.length === 0) return null;
    return stocked[Math.floor(this.rng() * stocked.length)] ?? null;
  }

  protected advance(now: number): void {
    if (this.simTime === null || now <= this.simTime) {
      this.simTime ??= now;
      return;
    }
    const gapS = Math.min((now - this.simTime) / 1000, MAX_GAP_S);
    this.simTime = now;
    const steps = Math.max(1, Math.ceil(gapS / STEP_S));
    const h = gapS / steps;
    for (let i = 0; i < steps; i++) {
      // Sales arrive as a Poisson process; at most one per short step.
      if (this.salesPerHour > 0 && this.rng() < Math.min(1, (this.salesPerHour / 3600) * h)) this.sell();
      // The cabinet temperature wanders around its setpoint (Ornstein-Uhlenbeck).
      this.tempC += 0.01 * (this.setpointC - this.tempC) * h + gaussian(this.rng) * 0.02 * Math.sqrt(h);
    }
    this.evaluateAlarms();
  }

  private stockMin(): number {
    return this.stock.length ? Math.min(...this.stock) : 0;
  }

  private evaluateAlarms(): void {
    const min = this.stockMin();
    if (min <= this.lowStockThreshold) {
      const slot = this.stock.indexOf(min);
      this.setAlarm('LOW_STOCK', true, 'warning', `slot ${slot + 1} has ${min} left`);
    } else {
      this.setAlarm('LOW_STOCK', false, 'info', 'stock above threshold');
    }
  }

  protected metrics(): Metrics {
    return {
      slots_total: this.stock.length,
      sold_total: this.soldTotal,
      stock_min: this.stockMin(),
      stock_total: this.stock.reduce((a, b) => a + b, 0),
      tempC: Math.round(this.tempC * 10) / 10,
      door: this.door,
    };
  }
}
