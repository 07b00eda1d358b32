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
 * A fridge temperature and door sensor. The cabinet warms towards the room through its
 * walls (much faster with the door open) and a thermostat runs the compressor between
 * setpoint ± hysteresis, so the temperature saw-tooths over a few simulated minutes the
 * way a real bottle cooler does. Faults on demand:
 *   - `warm`: the compressor fails, the cabinet climbs towards room temperature and
 *     raises TEMP_HIGH once above `tempHighC` (cleared below `tempHighC - 0.5`);
 *   - `door`: the door is left open; DOOR_OPEN after `doorOpenAlarmMs`.
 * These match the EVA-DTS event codes a vending/cooler controller reports (EJH
 * temperature rule violated, EGS door open; shared/reference/02-mdb.md).
 */
export type FridgeFault = 'warm' | 'door';

export interface FridgeOptions extends SimDeviceOptions {
  setpointC?: number;
  hysteresisC?: number;
  ambientC?: number;
  tempHighC?: number;
  /** Simulated time the door may stay open before DOOR_OPEN is raised. */
  doorOpenAlarmMs?: number;
  /** Random door openings per simulated hour (0 = only when asked). */
  doorOpensPerHour?: number;
  initialTempC?: number;
  /** Faults active from the start (a warm fridge for the dashboard test: `['warm']`). */
  faults?: FridgeFault[];
}

/** Wall leakage (1/s): dT/dt = k (ambient - T). A closed cooler loses ~0.6 C/min at 4 C. */
const LEAK_PER_S = 0.0006;
const DOOR_OPEN_LEAK_FACTOR = 10;
/** Cooling of a running compressor (C/s). */
const COOLING_C_PER_S = 0.025;
/** Largest integration step (simulated seconds). */
const STEP_S = 2;
/** A long gap (suspended laptop, paused clock) is not integrated beyond this. */
const MAX_GAP_S = 6 * 3600;
const TEMP_HIGH_CLEAR_MARGIN_C = 0.5;

export class SimFridge extends SimDevice {
  readonly kind = 'fridge';
  private tempC: number;
  private compressor = false;
  private door: 'open' | 'closed' = 'closed';
  private doorOpenedAt = 0;
  private doorCloseAt: number | null = null;
  private setpointC: number;
  private readonly hysteresisC: number;
  private readonly ambientC: number;
  private tempHighC: number;
  private doorOpenAlarmMs: number;
  private readonly doorOpensPerHour: number;
  private readonly activeFaults = new Set<FridgeFault>();
  private simTime: number | null = null;

  constructor(opts: FridgeOptions) {
    super(opts);
    this.setpointC = opts.setpointC ?? 4;
    this.hysteresisC = opts.hysteresisC ?? 1;
    this.ambientC = opts.ambientC ?? 22;
    this.tempHighC = opts.tempHighC ?? 8;
    this.doorOpenAlarmMs = opts.doorOpenAlarmMs ?? 60_000;
    this.doorOpensPerHour = opts.doorOpensPerHour ?? 4;
    this.tempC = opts.initialTempC ?? this.setpointC + (this.rng() - 0.5) * 2 * this.hysteresisC;
    this.compressor = this.tempC > this.setpointC;
    for (const f of opts.faults ?? []) {
      this.activeFaults.add(f);
      if (f === 'warm') this.compressor = false;
      if (f === 'door') {
        this.door = 'open';
        this.doorOpenedAt = this.now();
      }
    }
  }

  /** Turns a fault on or off. */
  setFault(fault: FridgeFault, on = true): void {
    if (on) this.activeFaults.add(fault);
    else this.activeFaults.delete(fault);
    if (fault === 'warm' && on) this.compressor = false;
    if (fault === 'door') {
      if (on) this.openDoor();
      else this.closeDoor();
    }
  }

  faults(): FridgeFault[] {
    return [...this.activeFaults];
  }

  /** Opens the door now (a person at the cooler) and reports it at once. */
  openDoor(holdMs?: number): void {
    const now = this.now();
    this.advance(now);
    if (this.door === 'closed') {
      this.door = 'open';
      this.doorOpenedAt = now;
    }
    this.doorCloseAt = holdMs !== undefined ? now + holdMs : null;
    this.publishTelemetry();
  }

  /** Closes the door now and reports it at once (a door sensor reports on change). */
  closeDoor(): void {
    const now = this.now();
    this.advance(now);
    this.activeFaults.delete('door');
    if (this.door === 'open') {
      this.door = 'closed';
      this.doorCloseAt = null;
      this.evaluateAlarms(now);
    }
    this.publishTelemetry();
  }

  get temperature(): number {
    return this.tempC;
  }

  protected override extraConfigKeys(): Record<string, ConfigKey> {
    return {
      setpointC: {
        get: () => this.setpointC,
        check: numRange(-30, 15),
        set: (v) => (this.setpointC = v as number),
      },
      tempHighC: {
        get: () => this.tempHighC,
        check: numRange(-20, 30),
        set: (v) => (this.tempHighC = v as number),
      },
      doorOpenAlarmMs: {
        get: () => this.doorOpenAlarmMs,
        check: intRange(1000, 86_400_000),
        set: (v) => (this.doorOpenAlarmMs = v as number),
      },
    };
  }

  protected advance(now: number): void {
    if (this.simTime === null || now <= this.simTime) {
      this.simTime ??= now;
      this.evaluateAlarms(now);
      return;
    }
    const gapS = Math.min((now - this.simTime) / 1000, MAX_GAP_S);
    const steps = Math.max(1, Math.ceil(gapS / STEP_S));
    const h = gapS / steps;
    let t = now - gapS * 1000;
    for (let i = 0; i < steps; i++) {
      t += h * 1000;
      this.stepDoor(t, h);
      this.stepThermal(h);
    }
    this.simTime = now;
    this.evaluateAlarms(now);
  }

  private stepDoor(t: number, h: number): void {
    if (this.door === 'closed') {
      if (this.doorOpensPerHour > 0 && this.rng() < (this.doorOpensPerHour / 3600) * h) {
        // Someone takes a drink: 5 to 40 s.
        this.door = 'open';
        this.doorOpenedAt = t;
        this.doorCloseAt = t + (5 + this.rng() * 35) * 1000;
      }
    } else if (this.doorCloseAt !== null && t >= this.doorCloseAt && !this.activeFaults.has('door')) {
      this.door = 'closed';
      this.doorCloseAt = null;
    }
  }

  private stepThermal(h: number): void {
    if (this.activeFaults.has('warm')) {
      this.compressor = false;
    } else if (this.tempC > this.setpointC + this.hysteresisC) {
      this.compressor = true;
    } else if (this.tempC < this.setpointC - this.hysteresisC) {
      this.compressor = false;
    }
    const leak = LEAK_PER_S * (this.door === 'open' ? DOOR_OPEN_LEAK_FACTOR : 1);
    const dT = (leak * (this.ambientC - this.tempC) - (this.compressor ? COOLING_C_PER_S : 0)) * h;
    this.tempC += dT + gaussian(this.rng) * 0.01 * Math.sqrt(h);
  }

  private evaluateAlarms(now: number): void {
    const t = this.tempC;
    if (t > this.tempHighC) {
      this.setAlarm('TEMP_HIGH', true, 'warning', `${t.toFixed(1)} C above the ${this.tempHighC} C limit`);
    } else if (t < this.tempHighC - TEMP_HIGH_CLEAR_MARGIN_C) {
      this.setAlarm('TEMP_HIGH', false, 'warning', `${t.toFixed(1)} C, back under ${this.tempHighC} C`);
    }
    const openFor = this.door === 'open' ? now - this.doorOpenedAt : 0;
    if (openFor >= this.doorOpenAlarmMs) {
      this.setAlarm('DOOR_OPEN', true, 'warning', `door open for ${Math.round(openFor / 1000)} s`);
    } else if (this.door === 'closed') {
      this.setAlarm('DOOR_OPEN', false, 'info', 'door closed');
    }
  }

  protected metrics(): Metrics {
    return { tempC: Math.round(this.tempC * 10) / 10, door: this.door, compressor: this.compressor };
  }
}
