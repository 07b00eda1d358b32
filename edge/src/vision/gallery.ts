import { vision } from '@storelink/protocols';
import { edgeError } from '../errors.ts';
import type { KvStore } from '../outbox/types.ts';
import { SimdDot } from './simd.ts';

/**
 * The edge's face gallery [VISION-GALLERY-1..4]: only consenting members of this gateway's
 * stores, sent by the cloud as sealed entries (AES-256-GCM under this gateway's gallery
 * key). Entries are stored *as received* — still sealed — so the embedding is encrypted
 * at rest; they are opened into memory only, for matching. Removals leave a tombstone
 * so a late, older upsert cannot bring an erased member back.
 */

const ENTRY = 'vision/gallery/e/';
const TOMB = 'vision/gallery/t/';
const VERSION = 'vision/gallery/version';

export interface Match {
  memberId: string;
  similarity: number;
  /**
   * Best similarity of any other member (a small margin means an ambiguous match). In the
   * two-stage match it is the best of the other candidates, so never above the exact one.
   */
  second: number;
}

export class Gallery {
  private ids: string[] = [];
  private index = new Map<string, number>();
  /** n × EMBEDDING_DIM, row i = ids[i] (a view into the kernel's memory when there is one). */
  private matrix: Float32Array = new Float32Array(0);
  /** n × sketchDim coarse sketches, row i = ids[i] [VISION-MATCH-1]. */
  private sketches: Float32Array = new Float32Array(0);
  /** Byte offsets of the rows and sketches in the kernel's memory. */
  private at = { sketches: 0, matrix: 0 };
  private kernel: SimdDot | null;
  private readonly top: TopK;
  private readonly sketchDim: number;
  private _version = 0;

  constructor(
    private readonly kv: KvStore,
    private readonly gateway: string,
    private readonly key: Buffer | undefined,
    /** Sizing of the two-stage match (benchmarks try others; docs/vision.md "Matching"). */
    o: { sketchDim?: number; candidates?: number; simd?: boolean } = {},
  ) {
    this.sketchDim = o.sketchDim ?? SKETCH_DIM;
    if (vision.EMBEDDING_DIM % this.sketchDim !== 0 || this.sketchDim % 4 !== 0) {
      throw new Error(`sketchDim must divide ${vision.EMBEDDING_DIM} and be a multiple of 4`);
    }
    this.top = new TopK(o.candidates ?? CANDIDATES);
    this.kernel = o.simd === false ? null : SimdDot.create();
  }

  /** Whether matching runs in WebAssembly SIMD (false: the JS loops). */
  get simd(): boolean {
    return this.kernel !== null;
  }

  get version(): number {
    return this._version;
  }
  get size(): number {
    return this.ids.length;
  }
  has(memberId: string): boolean {
    return this.index.has(memberId);
  }

  /** Opens every stored entry with the key; an entry that does not open is dropped and logged by the caller. */
  async load(): Promise<{ loaded: number; unreadable: string[] }> {
    this._version = Number((await this.kv.get(VERSION)) ?? 0);
    const unreadable: string[] = [];
    const rows: Array<[string, Float32Array]> = [];
    if (!this.key) return { loaded: 0, unreadable };
    for (const k of await this.kv.keys(ENTRY)) {
      const memberId = k.slice(ENTRY.length);
      const sealed = await this.kv.get(k);
      try {
        rows.push([memberId, vision.openEmbedding(this.key, this.gateway, memberId, sealed ?? '')]);
      } catch {
        unreadable.push(memberId);
      }
    }
    this.rebuild(rows);
    return { loaded: rows.length, unreadable };
  }

  /** vision.gallery.upsert: all entries open or none is applied. */
  async upsert(p: vision.GalleryUpsert): Promise<vision.GalleryCommandResult> {
    const key = this.requireKey();
    const opened: Array<[string, Float32Array, string]> = [];
    for (const e of p.entries) {
      try {
        opened.push([e.memberId, vision.openEmbedding(key, this.gateway, e.memberId, e.sealed), e.sealed]);
      } catch {
        throw edgeError('EDGE_ERR_VISION_GALLERY', {
          reason: `entry for ${e.memberId} does not open with this gateway's gallery key`,
        });
      }
    }
    // [VISION-GALLERY-3] an upsert older than the member's removal is skipped.
    const rows = this.rows();
    const skipped: string[] = [];
    for (const [memberId, emb, sealed] of opened) {
      const tomb = Number((await this.kv.get(TOMB + memberId)) ?? 0);
      if (tomb >= p.version) {
        skipped.push(memberId);
        continue;
      }
      await this.kv.put(ENTRY + memberId, sealed);
      rows.set(memberId, emb);
    }
    await this.bump(p.version);
    this.rebuild([...rows]);
    return { version: this._version, size: this.size, ...(skipped.length ? { skipped } : {}) };
  }

  /** vision.gallery.remove: removes and tombstones; ids already absent are confirmed too. */
  async remove(p: vision.GalleryRemove): Promise<vision.GalleryCommandResult> {
    const rows = this.rows();
    const removed: string[] = [];
    const absent: string[] = [];
    for (const id of p.memberIds) {
      await this.kv.put(TOMB + id, String(p.version));
      if (rows.delete(id)) {
        await this.kv.del(ENTRY + id);
        removed.push(id);
      } else absent.push(id);
    }
    await this.bump(p.version);
    this.rebuild([...rows]);
    return { version: this._version, size: this.size, removed, absent };
  }

  /**
   * Best match by cosine similarity [VISION-MATCH-1]. Small galleries: exact scan. From
   * EXACT_BELOW members on, two stages: a coarse score on a signed block-sum sketch of
   * every row (1/16 of the memory traffic) picks `candidates` rows, which are then scored
   * exactly on all 1024 dimensions. The reported similarity is always the exact one.
   * Both stages run in WebAssembly SIMD [VISION-MATCH-2] (JS loops where it is missing),
   * over rows kept contiguous in the kernel's memory; a query allocates nothing.
   */
  match(q: Float32Array): Match | undefined {
    const n = this.ids.length;
    if (n === 0) return undefined;
    if (n < EXACT_BELOW) return this.matchExact(q);
    const top = this.top;
    top.reset();
    const k = this.kernel;
    if (k) {
      const f = k.floats;
      f.set(q, Q_AT / 4);
      sketchInto(q, f, QS_AT / 4, this.sketchDim);
      k.scores(QS_AT, this.at.sketches, n, this.sketchDim * 4, OUT_AT);
      const o = OUT_AT / 4;
      for (let i = 0; i < n; i++) top.offer(i, f[o + i]!);
      return this.result(this.exactSimd(k, top.indices()));
    }
    const qs = new Float32Array(this.sketchDim);
    sketchInto(q, qs, 0, this.sketchDim);
    const coarse = this.sketches;
    const dim = this.sketchDim;
    for (let i = 0; i < n; i++) {
      const o = i * dim;
      // four independent sums: no single dependency chain through the loop
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let j = 0; j < dim; j += 4) {
        s0 += coarse[o + j]! * qs[j]!;
        s1 += coarse[o + j + 1]! * qs[j + 1]!;
        s2 += coarse[o + j + 2]! * qs[j + 2]!;
        s3 += coarse[o + j + 3]! * qs[j + 3]!;
      }
      top.offer(i, s0 + s1 + s2 + s3);
    }
    return this.result(this.exactJs(q, top.indices()));
  }

  /** Exact scan over every row (small galleries; benchmarks compare the two stages against it). */
  matchExact(q: Float32Array): Match | undefined {
    const n = this.ids.length;
    if (n === 0) return undefined;
    const k = this.kernel;
    if (!k) return this.result(this.exactJs(q, allRows(n)));
    const f = k.floats;
    f.set(q, Q_AT / 4);
    k.scores(Q_AT, this.at.matrix, n, vision.EMBEDDING_DIM * 4, OUT_AT);
    const r = { best: -2, second: -2, bestI: 0 };
    const o = OUT_AT / 4;
    for (let i = 0; i < n; i++) rank(r, i, f[o + i]!);
    return this.result(r);
  }

  /** The JS path, kept as the reference the SIMD kernel is tested against. */
  matchWithoutSimd(q: Float32Array): Match | undefined {
    const k = this.kernel;
    this.kernel = null;
    try {
      return this.match(q);
    } finally {
      this.kernel = k;
    }
  }

  private exactSimd(k: SimdDot, rows: Int32Array): { best: number; second: number; bestI: number } {
    const r = { best: -2, second: -2, bestI: 0 };
    const bytes = vision.EMBEDDING_DIM * 4;
    for (let c = 0; c < rows.length; c++) {
      const i = rows[c]!;
      rank(r, i, k.dot(Q_AT, this.at.matrix + i * bytes, bytes));
    }
    return r;
  }

  private exactJs(q: Float32Array, rows: Iterable<number>): { best: number; second: number; bestI: number } {
    const d = vision.EMBEDDING_DIM;
    const m = this.matrix;
    const r = { best: -2, second: -2, bestI: 0 };
    for (const i of rows) {
      const o = i * d;
      let s = 0;
      for (let j = 0; j < d; j += 4) {
        s +=
          m[o + j]! * q[j]! +
          m[o + j + 1]! * q[j + 1]! +
          m[o + j + 2]! * q[j + 2]! +
          m[o + j + 3]! * q[j + 3]!;
      }
      rank(r, i, s);
    }
    return r;
  }

  private result(r: { best: number; second: number; bestI: number }): Match {
    const clamp = (x: number) => Math.min(1, Math.max(0, x));
    return { memberId: this.ids[r.bestI]!, similarity: clamp(r.best), second: clamp(r.second) };
  }

  /** Test and benchmark seam: replaces the in-memory rows (not persisted). */
  setRowsForBenchmark(rows: Array<[string, Float32Array]>): void {
    this.rebuild(rows);
  }

  private requireKey(): Buffer {
    if (!this.key) {
      throw edgeError('EDGE_ERR_VISION_GALLERY', {
        reason: 'no gallery key configured (vision.galleryKey or vision.galleryKeyFile)',
      });
    }
    return this.key;
  }

  private async bump(version: number): Promise<void> {
    if (version > this._version) {
      this._version = version;
      await this.kv.put(VERSION, String(version));
    }
  }

  /** Copies of the rows (the matrix may be kernel memory that the next rebuild overwrites). */
  private rows(): Map<string, Float32Array> {
    const d = vision.EMBEDDING_DIM;
    return new Map(this.ids.map((id, i) => [id, this.matrix.slice(i * d, (i + 1) * d)]));
  }

  private rebuild(rows: Array<[string, Float32Array]>): void {
    const d = vision.EMBEDDING_DIM;
    const dim = this.sketchDim;
    const n = rows.length;
    this.ids = rows.map(([id]) => id);
    this.index = new Map(this.ids.map((id, i) => [id, i]));
    const k = this.kernel;
    if (!k) {
      this.matrix = new Float32Array(n * d);
      this.sketches = new Float32Array(n * dim);
    } else {
      // Layout: query | query sketch | scores (n) | sketches (n × dim) | rows (n × d), 16-byte aligned.
      const sketches = align16(OUT_AT + n * 4);
      const matrix = align16(sketches + n * dim * 4);
      k.reserve(matrix + n * d * 4);
      this.at = { sketches, matrix };
      this.matrix = new Float32Array(k.floats.buffer, matrix, n * d);
      this.sketches = new Float32Array(k.floats.buffer, sketches, n * dim);
    }
    rows.forEach(([, v], i) => {
      this.matrix.set(v, i * d);
      sketchInto(v, this.sketches, i * dim, dim);
    });
  }
}

function rank(r: { best: number; second: number; bestI: number }, i: number, s: number): void {
  if (s > r.best) {
    r.second = r.best;
    r.best = s;
    r.bestI = i;
  } else if (s > r.second) r.second = s;
}

const align16 = (x: number) => Math.ceil(x / 16) * 16;
/** Kernel memory: the query (1024 floats), its sketch (≤ 256 floats), then the scores. */
const Q_AT = 0;
const QS_AT = vision.EMBEDDING_DIM * 4;
const OUT_AT = QS_AT + 256 * 4;

/** Below this many members the exact scan is cheap enough on its own. */
const EXACT_BELOW = 512;
/** Rows re-scored exactly after the coarse pass. */
const CANDIDATES = 128;
const SKETCH_DIM = 128;
/** Fixed pseudo-random ±1 per input dimension (same on every edge; no training data needed). */
const SIGNS = (() => {
  const out = new Float32Array(vision.EMBEDDING_DIM);
  let s = 0x9e3779b9;
  for (let i = 0; i < out.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s & 0x8000 ? 1 : -1;
  }
  return out;
})();

/**
 * Sparse sign projection 1024 → dim, written into `out` at `at`: each output sums
 * 1024/dim inputs with fixed random signs (a JL-style sketch).
 */
function sketchInto(v: Float32Array, out: Float32Array, at: number, dim: number): void {
  const block = vision.EMBEDDING_DIM / dim;
  for (let k = 0; k < dim; k++) {
    let s = 0;
    const o = k * block;
    for (let j = 0; j < block; j++) s += v[o + j]! * SIGNS[o + j]!;
    out[at + k] = s;
  }
}

function* allRows(n: number): Iterable<number> {
  for (let i = 0; i < n; i++) yield i;
}

/** The k highest scores seen (unordered), with an O(1) rejection of everything below the current floor. */
class TopK {
  private readonly idx: Int32Array;
  private readonly val: Float32Array;
  private n = 0;
  private minAt = 0;
  constructor(private readonly k: number) {
    this.idx = new Int32Array(k);
    this.val = new Float32Array(k);
  }
  reset(): void {
    this.n = 0;
    this.minAt = 0;
  }
  offer(i: number, v: number): void {
    if (this.n < this.k) {
      this.idx[this.n] = i;
      this.val[this.n] = v;
      this.n++;
      if (this.n === this.k) this.findMin();
      return;
    }
    if (v <= this.val[this.minAt]!) return;
    this.idx[this.minAt] = i;
    this.val[this.minAt] = v;
    this.findMin();
  }
  private findMin(): void {
    let m = 0;
    for (let j = 1; j < this.n; j++) if (this.val[j]! < this.val[m]!) m = j;
    this.minAt = m;
  }
  indices(): Int32Array {
    return this.idx.subarray(0, this.n);
  }
}
