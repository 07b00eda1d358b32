import type { BinaryValue, Line, WatchCallback } from './line.ts';

export interface Timers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}
export const realTimers: Timers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

/**
 * Debounces an input line: a change is reported only after the line has held the new
 * value for `ms`, and only if it differs from the last reported value (onoff's
 * debounceTimeout only delays, and noisy inputs fire repeatedly with the same value,
 * fivdi/onoff#51) [GPIO-DEBOUNCE-1]. Timers are injected so tests run on a fake clock.
 */
export function debounceLine(inner: Line, ms: number, timers: Timers = realTimers): Line {
  const watchers = new Set<WatchCallback>();
  let stable: BinaryValue | undefined;
  let candidate: BinaryValue | undefined;
  let timer: unknown;
  let started = false;
  const onRaw: WatchCallback = (err, value) => {
    if (err) {
      for (const cb of [...watchers]) cb(err, value);
      return;
    }
    candidate = value;
    if (timer !== undefined) timers.clearTimeout(timer);
    timer = timers.setTimeout(() => {
      timer = undefined;
      if (candidate === undefined || candidate === stable) return;
      stable = candidate;
      for (const cb of [...watchers]) cb(null, candidate);
    }, ms);
  };
  const start = async (): Promise<void> => {
    if (started) return;
    started = true;
    inner.watch(onRaw);
    if (stable === undefined) stable = await inner.read();
  };
  return {
    async read() {
      return stable ?? inner.read();
    },
    write: (v) => inner.write(v),
    watch(cb) {
      watchers.add(cb);
      void start();
    },
    unwatch(cb) {
      if (cb) watchers.delete(cb);
      else watchers.clear();
    },
    async close() {
      if (timer !== undefined) timers.clearTimeout(timer);
      inner.unwatch(onRaw);
      watchers.clear();
      await inner.close();
    },
  };
}
