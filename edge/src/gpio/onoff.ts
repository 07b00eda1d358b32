import type { BinaryValue, Direction, Edge, Line, WatchCallback } from './line.ts';

/**
 * A Line over onoff (sysfs GPIO). onoff is an optional dependency and there is no GPIO
 * hardware in CI, so it is loaded lazily here and never at module load.
 * `base` is the sysfs offset of the GPIO chip: newer kernels number lines from 512+
 * (Pi 4 on Bookworm: 512/522, Pi 5: 571; fivdi/onoff#199, #200), so BCM pin N is N + base.
 */
export interface OnoffLineOptions {
  base?: number;
  activeLow?: boolean;
  /** onoff's own debounce (it only delays; also use `debounceLine` for noisy switches). */
  debounceTimeout?: number;
  /** For tests: replaces `import('onoff')`. */
  load?: () => Promise<OnoffModule>;
}

interface GpioLike {
  read(): Promise<BinaryValue>;
  write(v: BinaryValue): Promise<void>;
  watch(cb: WatchCallback): void;
  unwatch(cb?: WatchCallback): void;
  unexport(): void;
}
export interface OnoffModule {
  Gpio: new (
    gpio: number,
    direction: Direction,
    edge?: Edge,
    options?: { activeLow?: boolean; debounceTimeout?: number },
  ) => GpioLike;
}

export async function createOnoffLine(
  pin: number,
  direction: Direction,
  edge: Edge = 'none',
  opts: OnoffLineOptions = {},
): Promise<Line> {
  const load = opts.load ?? (async () => (await import('onoff' as string)) as unknown as OnoffModule);
  const mod = await load();
  const Gpio = mod.Gpio ?? (mod as unknown as { default: OnoffModule }).default.Gpio;
  const gpio = new Gpio(pin + (opts.base ?? 0), direction, edge, {
    activeLow: opts.activeLow ?? false,
    ...(opts.debounceTimeout !== undefined ? { debounceTimeout: opts.debounceTimeout } : {}),
  });
  return {
    read: () => gpio.read(),
    write: (v) => gpio.write(v),
    watch: (cb) => gpio.watch(cb),
    unwatch: (cb) => gpio.unwatch(cb),
    async close() {
      gpio.unwatch();
      gpio.unexport();
    },
  };
}
