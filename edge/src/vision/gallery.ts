import { vision } from '@storelink/protocols';
import { edgeError } from '../errors.ts';
import type { KvStore } from '../outbox/types.ts';

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
  /** n × EMBEDDING_DIM, row i = ids[i]. */
  private matrix = new Float32Array(0);
  /** n × SKETCH_DIM coarse sketches, row i = ids[i] [VISION-MATCH-1]. */
  private sketches = new Float32Array(0);
  private _version = 0;

  constructor(
    private readonly kv: KvStore,
    private readonly gateway: string,
    private readonly key: Buffer | undefined,
  ) {}

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
   * EXACT_BELOW members on, two stages: a coarse score on a 64-d signed block-sum sketch
   * of every row (1/16 of the memory traffic) picks CANDIDATES rows, which are then scored
   * exactly on all 1024 dimensions. The reported similarity is always the exact one.
   */
  match(q: Float32Array): Match | undefined {
    const n = this.ids.length;
    if (n === 0) return undefined;
    if (n < EXACT_BELOW) return this.result(this.exact(q, allRows(n)));
    const qs = sketch(q);
    const coarse = this.sketches;
    const top = new TopK(CANDIDATES);
    for (let i = 0; i < n; i++) {
      const o = i * SKETCH_DIM;
      // four independent sums: no single dependency chain through the loop
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      for (let j = 0; j < SKETCH_DIM; j += 4) {
        s0 += coarse[o + j]! * qs[j]!;
        s1 += coarse[o + j + 1]! * qs[j + 1]!;
        s2 += coarse[o + j + 2]! * qs[j + 2]!;
        s3 += coarse[o + j + 3]! * qs[j + 3]!;
      }
      top.offer(i, s0 + s1 + s2 + s3);
    }
    return this.result(this.exact(q, top.indices()));
  }

  /** Exact scan over every row (benchmarks compare the two stages against it). */
  matchExact(q: Float32Array): Match | undefined {
    const n = this.ids.length;
    return n === 0 ? undefined : this.result(this.exact(q, allRows(n)));
  }

  private exact(q: Float32Array, rows: Iterable<number>): { best: number; second: number; bestI: number } {
    const d = vision.EMBEDDING_DIM;
    const m = this.matrix;
    let best = -2;
    let second = -2;
    let bestI = 0;
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
      if (s > best) {
        second = best;
        best = s;
        bestI = i;
      } else if (s > second) second = s;
    }
    return { best, second, bestI };
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

  private rows(): Map<string, Float32Array> {
    const d = vision.EMBEDDING_DIM;
    return new Map(this.ids.map((id, i) => [id, this.matrix.subarray(i * d, (i + 1) * d)]));
  }

  private rebuild(rows: Array<[string, Float32Array]>): void {
    const d = vision.EMBEDDING_DIM;
    const m = new Float32Array(rows.length * d);
    rows.forEach(([, v], i) => {
      m.set(v, i * d);
    });
    const sk = new Float32Array(rows.length * SKETCH_DIM);
    rows.forEach(([, v], i) => {
      sk.set(sketch(v), i * SKETCH_DIM);
    });
    this.ids = rows.map(([id]) => id);
    this.index = new Map(this.ids.map((id, i) => [id, i]));
    this.matrix = m;
    this.sketches = sk;
  }
}

/** Below this many members the exact scan is cheap enough on its own. */
const EXACT_BELOW = 512;
/** Rows re-scored exactly after the coarse pass. */
const CANDIDATES = 128;
const SKETCH_DIM = 64;
const BLOCK = vision.EMBEDDING_DIM / SKETCH_DIM;
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

/** Sparse sign projection 1024 → 64: each output sums 16 inputs with random signs (a JL-style sketch). */
function sketch(v: Float32Array): Float32Array {
  const out = new Float32Array(SKETCH_DIM);
  for (let k = 0; k < SKETCH_DIM; k++) {
    let s = 0;
    const o = k * BLOCK;
    for (let j = 0; j < BLOCK; j++) s += v[o + j]! * SIGNS[o + j]!;
    out[k] = s;
  }
  return out;
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
