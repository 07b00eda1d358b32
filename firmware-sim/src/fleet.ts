import type { SimDevice, SimDeviceOptions, SimDeviceStats } from './device.ts';
import { type FridgeOptions, SimFridge } from './fridge.ts';
import { SimVending, type VendingOptions } from './vending.ts';

export type SimKind = 'fridge' | 'vending';

export interface SimDeviceSpec {
  id: string;
  password?: string;
  kind: SimKind;
  intervalMs?: number;
  seed?: number;
  /** Kind-specific options (setpointC, slots, salesPerHour, ...). */
  options?: Omit<FridgeOptions & VendingOptions, keyof SimDeviceOptions>;
}

export interface SimFleetSpec {
  brokerUrl: string;
  devices: SimDeviceSpec[];
  now?: () => number;
  keepaliveS?: number;
  reconnectPeriodMs?: number;
  maxInflight?: number;
  /** Start each device's telemetry timer (default true). */
  autoTick?: boolean;
}

export interface SimFleetStats {
  devices: number;
  connected: number;
  published: number;
  acked: number;
  inflight: number;
  dropped: number;
  errorsReceived: number;
  commandsHandled: number;
  commandsFailed: number;
  connectErrors: number;
  perDevice: SimDeviceStats[];
}

export interface SimFleet {
  devices: SimDevice[];
  device<T extends SimDevice = SimDevice>(id: string): T | undefined;
  stats(): SimFleetStats;
  /** Resolves once every device is connected and subscribed. */
  ready(timeoutMs?: number): Promise<void>;
  stop(opts?: { force?: boolean }): Promise<void>;
}

export function createSimDevice(
  spec: SimDeviceSpec,
  common: Omit<SimFleetSpec, 'devices'>,
): SimFridge | SimVending {
  const opts: SimDeviceOptions = {
    ...spec.options,
    id: spec.id,
    password: spec.password,
    brokerUrl: common.brokerUrl,
    intervalMs: spec.intervalMs,
    seed: spec.seed,
    now: common.now,
    keepaliveS: common.keepaliveS,
    reconnectPeriodMs: common.reconnectPeriodMs,
    maxInflight: common.maxInflight,
    autoTick: common.autoTick,
  };
  // Leave unset fields to each device's defaults.
  for (const k of Object.keys(opts) as (keyof SimDeviceOptions)[]) if (opts[k] === undefined) delete opts[k];
  switch (spec.kind) {
    case 'fridge':
      return new SimFridge(opts);
    case 'vending':
      return new SimVending(opts);
    default:
      throw new Error(`unknown simulated device kind '${(spec as { kind: unknown }).kind}'`);
  }
}

/** Starts one simulated device per spec entry, each with its own MQTT connection. */
export function startSimFleet(spec: SimFleetSpec): SimFleet {
  const { devices: specs, ...common } = spec;
  const ids = new Set<string>();
  for (const d of specs) {
    if (ids.has(d.id)) throw new Error(`device id '${d.id}' appears twice in the fleet`);
    ids.add(d.id);
  }
  const devices: SimDevice[] = specs.map((d) => createSimDevice(d, common).start());
  const byId = new Map(devices.map((d) => [d.id, d]));
  return {
    devices,
    device: <T extends SimDevice>(id: string) => byId.get(id) as T | undefined,
    stats() {
      const perDevice = devices.map((d) => d.stats());
      const sum = (k: keyof SimDeviceStats) => perDevice.reduce((a, s) => a + (s[k] as number), 0);
      return {
        devices: devices.length,
        connected: perDevice.filter((s) => s.connected).length,
        published: sum('published'),
        acked: sum('acked'),
        inflight: sum('inflight'),
        dropped: sum('dropped'),
        errorsReceived: sum('errorsReceived'),
        commandsHandled: sum('commandsHandled'),
        commandsFailed: sum('commandsFailed'),
        connectErrors: sum('connectErrors'),
        perDevice,
      };
    },
    async ready(timeoutMs = 10_000) {
      await Promise.all(devices.map((d) => d.ready(timeoutMs)));
    },
    async stop(opts) {
      await Promise.all(devices.map((d) => d.stop(opts)));
    },
  };
}
