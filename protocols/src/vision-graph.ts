/**
 * Load-time rewrite of FaceRes' graph [VISION-RUNTIME-3]. The model was exported with
 * every ReLU6 spelled out as three ops — `Relu` → `Minimum(·, 6)` → `Maximum(·, 0)` — and
 * tfjs-backend-wasm runs `Minimum`/`Maximum` against a scalar as generic broadcasting
 * binary ops: profiled here, those two ops took 85 of FaceRes' 174 ms per face. The chain
 * is replaced by the single `Relu6` op, which computes exactly min(max(x, 0), 6), so the
 * descriptor is unchanged (the unit test compares both graphs' outputs).
 *
 * Only chains whose constants really are 6 and 0 (read from the weights) and whose middle
 * ops have no other consumer are rewritten; anything else is left as exported.
 */

export interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, unknown>;
}

export interface WeightSpec {
  name: string;
  shape: number[];
  dtype: string;
  quantization?: { dtype: string; scale?: number; min?: number };
}

/** Bytes a weight takes in the shard data (tfjs weights manifest rules). */
function weightBytes(w: WeightSpec): number {
  const n = w.shape.reduce((a, b) => a * b, 1);
  const q = w.quantization?.dtype;
  if (q === 'uint8') return n;
  if (q === 'uint16' || q === 'float16') return n * 2;
  return n * 4; // float32, int32
}

/** Value of every scalar float weight (float32, or float16-quantised). */
export function scalarWeights(specs: WeightSpec[], data: ArrayBuffer): Map<string, number> {
  const view = new DataView(data);
  const out = new Map<string, number>();
  let off = 0;
  for (const w of specs) {
    const scalar = w.shape.reduce((a, b) => a * b, 1) === 1 && w.dtype === 'float32';
    if (scalar && !w.quantization) out.set(w.name, view.getFloat32(off, true));
    else if (scalar && w.quantization?.dtype === 'float16') out.set(w.name, half(view.getUint16(off, true)));
    off += weightBytes(w);
  }
  return out;
}

/** IEEE 754 binary16 → number. */
function half(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 31) return frac ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

const base = (input: string) => input.replace(/^\^/, '').split(':')[0]!;

/** Rewrites Relu → Minimum(6) → Maximum(0) chains into Relu6, in place; returns how many. */
export function fuseRelu6Chains(nodes: GraphNode[], scalars: Map<string, number>): number {
  const byName = new Map(nodes.map((n) => [n.name, n]));
  const consumers = new Map<string, number>();
  for (const n of nodes)
    for (const i of n.input ?? []) consumers.set(base(i), (consumers.get(base(i)) ?? 0) + 1);
  const drop = new Set<string>();
  for (const max of nodes) {
    if (max.op !== 'Maximum' || max.input?.length !== 2) continue;
    const min = byName.get(base(max.input[0]!));
    if (scalars.get(base(max.input[1]!)) !== 0 || min?.op !== 'Minimum' || min.input?.length !== 2) continue;
    const relu = byName.get(base(min.input[0]!));
    if (scalars.get(base(min.input[1]!)) !== 6 || relu?.op !== 'Relu' || relu.input?.length !== 1) continue;
    if (consumers.get(min.name) !== 1 || consumers.get(relu.name) !== 1) continue;
    max.op = 'Relu6';
    max.input = [relu.input[0]!];
    max.attr = max.attr?.T ? { T: max.attr.T } : {};
    drop.add(min.name).add(relu.name);
  }
  for (let i = nodes.length - 1; i >= 0; i--) if (drop.has(nodes[i]!.name)) nodes.splice(i, 1);
  return drop.size / 2;
}
