/**
 * Dot products for the gallery match [VISION-MATCH-2] in WebAssembly SIMD: four float32
 * lanes per instruction instead of V8's one float64 at a time (10,000 × 64 multiply-adds
 * take ~1.1 ms as a JS loop here, ~0.1 ms here). The module is ~150 bytes, assembled below
 * from its opcodes (no toolchain, nothing fetched); its functions:
 *
 *   scores(q, rows, n, rowBytes, out): out[i] = Σ_j rows[i][j] · q[j]   for i < n
 *   dot(a, b, bytes) → f32:            Σ_j a[j] · b[j]
 *
 * Pointers and lengths are byte offsets into the module's own memory; lengths are
 * multiples of 16 (four floats).
 */

const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;
const op = {
  block: 0x02,
  loop: 0x03,
  end: 0x0b,
  br: 0x0c,
  brIf: 0x0d,
  get: 0x20,
  set: 0x21,
  i32Const: 0x41,
  i32GeU: 0x4f,
  i32Add: 0x6a,
  f32Store: 0x38,
  f32Add: 0x92,
} as const;
const simd = {
  load: [0xfd, 0x00],
  const: [0xfd, 0x0c],
  extractLane: [0xfd, 0x1f],
  add: [0xfd, 0xe4, 0x01],
  mul: [0xfd, 0xe6, 0x01],
} as const;
const EMPTY = 0x40;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];
const name = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'ascii')];
const memarg = (align: number) => [align, 0];

/** acc += load(a + j) * load(b + j) for j in [0, len) step 16; locals: a, b, len, j, acc. */
function dotLoop(a: number, b: number, len: number, j: number, acc: number): number[] {
  return [
    ...[op.i32Const, 0, op.set, j],
    ...[op.block, EMPTY, op.loop, EMPTY],
    ...[op.get, j, op.get, len, op.i32GeU, op.brIf, 1],
    op.get,
    acc,
    ...[op.get, a, op.get, j, op.i32Add, ...simd.load, ...memarg(0)],
    ...[op.get, b, op.get, j, op.i32Add, ...simd.load, ...memarg(0)],
    ...simd.mul,
    ...simd.add,
    ...[op.set, acc],
    ...[op.get, j, op.i32Const, 16, op.i32Add, op.set, j],
    ...[op.br, 0, op.end, op.end],
  ];
}

/** acc's four lanes summed, left on the stack as an f32. */
function laneSum(acc: number): number[] {
  return [
    ...[op.get, acc, ...simd.extractLane, 0],
    ...[op.get, acc, ...simd.extractLane, 1, op.f32Add],
    ...[op.get, acc, ...simd.extractLane, 2, op.f32Add],
    ...[op.get, acc, ...simd.extractLane, 3, op.f32Add],
  ];
}

const zero = [...simd.const, ...new Array<number>(16).fill(0)];

function moduleBytes(): Uint8Array {
  // scores(q=0, rows=1, n=2, rowBytes=3, out=4); locals i=5, j=6, acc=7
  const scores = [
    ...vec([
      [2, I32],
      [1, V128],
    ]),
    ...[op.block, EMPTY, op.loop, EMPTY],
    ...[op.get, 5, op.get, 2, op.i32GeU, op.brIf, 1],
    ...[...zero, op.set, 7],
    ...dotLoop(1, 0, 3, 6, 7),
    ...[op.get, 4, ...laneSum(7), op.f32Store, ...memarg(2)],
    ...[op.get, 4, op.i32Const, 4, op.i32Add, op.set, 4],
    ...[op.get, 1, op.get, 3, op.i32Add, op.set, 1],
    ...[op.get, 5, op.i32Const, 1, op.i32Add, op.set, 5],
    ...[op.br, 0, op.end, op.end],
    op.end,
  ];
  // dot(a=0, b=1, bytes=2) -> f32; locals j=3, acc=4
  const dot = [
    ...vec([
      [1, I32],
      [1, V128],
    ]),
    ...[...zero, op.set, 4],
    ...dotLoop(0, 1, 2, 3, 4),
    ...laneSum(4),
    op.end,
  ];
  const bytes = [
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(
      1,
      vec([
        [0x60, ...vec([[I32], [I32], [I32], [I32], [I32]]), 0],
        [0x60, ...vec([[I32], [I32], [I32]]), 1, F32],
      ]),
    ),
    ...section(3, vec([[0], [1]])),
    ...section(5, vec([[0x00, 1]])),
    ...section(
      7,
      vec([
        [...name('mem'), 0x02, 0],
        [...name('scores'), 0x00, 0],
        [...name('dot'), 0x00, 1],
      ]),
    ),
    ...section(
      10,
      vec([
        [...uleb(scores.length), ...scores],
        [...uleb(dot.length), ...dot],
      ]),
    ),
  ];
  return Uint8Array.from(bytes);
}

/** The few WebAssembly APIs used (this project's TS lib has no WebAssembly values). */
interface Wasm {
  validate(bytes: Uint8Array): boolean;
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (m: WasmModule) => { exports: unknown };
}
type WasmModule = { readonly __wasmModule: unique symbol };
const WA = (globalThis as unknown as { WebAssembly: Wasm }).WebAssembly;

interface Exports {
  mem: { buffer: ArrayBuffer; grow(pages: number): number };
  scores(q: number, rows: number, n: number, rowBytes: number, out: number): void;
  dot(a: number, b: number, bytes: number): number;
}

let compiled: WasmModule | null | undefined;

/** The compiled module, or null where WebAssembly SIMD is not available (the JS loops are used). */
export function simdModule(): WasmModule | null {
  if (compiled === undefined) {
    const bytes = moduleBytes();
    compiled = WA.validate(bytes) ? new WA.Module(bytes) : null;
  }
  return compiled;
}

/** One instance with its own memory; views are re-made when the memory grows. */
export class SimdDot {
  private readonly x: Exports;
  private f32: Float32Array;

  private constructor(module: WasmModule) {
    this.x = new WA.Instance(module).exports as Exports;
    this.f32 = new Float32Array(this.x.mem.buffer);
  }

  static create(): SimdDot | null {
    const m = simdModule();
    return m ? new SimdDot(m) : null;
  }

  /** Makes the memory at least `bytes` long (it only grows). */
  reserve(bytes: number): void {
    const have = this.x.mem.buffer.byteLength;
    if (bytes > have) this.x.mem.grow(Math.ceil((bytes - have) / 65536));
    if (this.f32.buffer !== this.x.mem.buffer) this.f32 = new Float32Array(this.x.mem.buffer);
  }

  /** Float view of the memory (valid until the next reserve). */
  get floats(): Float32Array {
    return this.f32;
  }

  scores(q: number, rows: number, n: number, rowBytes: number, out: number): void {
    this.x.scores(q, rows, n, rowBytes, out);
  }

  dot(a: number, b: number, bytes: number): number {
    return this.x.dot(a, b, bytes);
  }
}
