/**
 * A GPIO line, small enough to have a simulated twin (house style 1): the drop sensor
 * (IR beam across the delivery chute), the door switch and the lock relay are Lines.
 * Values are logical (1 = active): `activeLow` wiring is handled by the implementation.
 */
export type BinaryValue = 0 | 1;
export type Direction = 'in' | 'out';
export type Edge = 'none' | 'rising' | 'falling' | 'both';
export type WatchCallback = (err: Error | null | undefined, value: BinaryValue) => void;

export interface Line {
  read(): Promise<BinaryValue>;
  write(value: BinaryValue): Promise<void>;
  watch(cb: WatchCallback): void;
  unwatch(cb?: WatchCallback): void;
  close(): Promise<void>;
}

/** The in-process line used by unit tests and driven by the simulator. */
export interface SimLine extends Line {
  /** Sets the value from the outside world (the simulated sensor); fires watchers per `edge`. */
  set(value: BinaryValue): void;
  /** Values written through `write` (a relay's history). */
  readonly writes: BinaryValue[];
  readonly closed: boolean;
}

export function createSimLine(
  opts: { initial?: BinaryValue; edge?: Edge; direction?: Direction } = {},
): SimLine {
  let value: BinaryValue = opts.initial ?? 0;
  const edge = opts.edge ?? 'both';
  const direction = opts.direction ?? 'in';
  const watchers = new Set<WatchCallback>();
  const writes: BinaryValue[] = [];
  let closed = false;
  const fire = (prev: BinaryValue, next: BinaryValue): void => {
    if (prev === next) return;
    const rising = next === 1;
    if (edge === 'none' || (edge === 'rising' && !rising) || (edge === 'falling' && rising)) return;
    for (const cb of [...watchers]) cb(null, next);
  };
  const assertOpen = (): void => {
    if (closed) throw new Error('line is closed');
  };
  return {
    get writes() {
      return writes;
    },
    get closed() {
      return closed;
    },
    async read() {
      assertOpen();
      return value;
    },
    async write(v) {
      assertOpen();
      if (direction !== 'out') throw new Error('cannot write an input line');
      writes.push(v);
      const prev = value;
      value = v;
      fire(prev, v);
    },
    set(v) {
      if (closed) return;
      const prev = value;
      value = v;
      fire(prev, v);
    },
    watch(cb) {
      watchers.add(cb);
    },
    unwatch(cb) {
      if (cb) watchers.delete(cb);
      else watchers.clear();
    },
    async close() {
      closed = true;
      watchers.clear();
    },
  };
}
