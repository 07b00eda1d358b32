import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { type Static, Type } from '@sinclair/typebox';
import { registerCommandType } from './commands.ts';
import { registerEventType } from './events.ts';

/**
 * On-device vision (docs/vision.md): gallery commands, the occupancy event, and the pure
 * face-model arithmetic shared by the edge (recognition) and the cloud (enrolment).
 *
 * Why here: edge and cloud both turn a face into an embedding and must agree bit for bit
 * on anchors, box decoding, crop geometry, normalisation, quantisation and the sealed
 * gallery format — a drift between two copies would silently break matching. That
 * arithmetic is pure (arrays in, arrays out), so it lives in protocols, which does no
 * I/O. Loading model files and running tfjs is I/O and a heavy runtime: each side has
 * its own small runner (edge/src/vision/model.ts, cloud/src/vision/embedder.ts).
 */

// ---------------------------------------------------------------------------------------
// Wire: commands and events
// ---------------------------------------------------------------------------------------

/** Camera → edge frame topic type (`dev/{cam}/evt/vision.frame`, raw JPEG). Never uplinked. */
export const VISION_FRAME = 'vision.frame';
export const VISION_GALLERY_UPSERT = 'vision.gallery.upsert';
export const VISION_GALLERY_REMOVE = 'vision.gallery.remove';
export const VISION_OCCUPANCY = 'vision.occupancy';

/** Entries per upsert command: 64 × ~1.5 KiB stays far below the edge's 256 KiB command limit. */
export const GALLERY_UPSERT_MAX_ENTRIES = 64;
/** Member id pattern shared with member.recognized. */
const MemberId = Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' });
const CameraId = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' });

export const GalleryUpsertPayload = Type.Object(
  {
    /** Gallery version after this command (cloud-assigned, per gateway, increasing). */
    version: Type.Integer({ minimum: 1 }),
    entries: Type.Array(
      Type.Object(
        {
          memberId: MemberId,
          /** sealEmbedding() output, base64: only this gateway's key opens it [VISION-GALLERY-2]. */
          sealed: Type.String({ pattern: '^[A-Za-z0-9+/=]{32,4096}$' }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: GALLERY_UPSERT_MAX_ENTRIES },
    ),
  },
  { additionalProperties: false },
);
export type GalleryUpsert = Static<typeof GalleryUpsertPayload>;

export const GalleryRemovePayload = Type.Object(
  {
    version: Type.Integer({ minimum: 1 }),
    memberIds: Type.Array(MemberId, { minItems: 1, maxItems: 1000 }),
    /** Why: `withdrawn` (consent withdrawn) or `erased` (erasure request). */
    reason: Type.Union([Type.Literal('withdrawn'), Type.Literal('erased')]),
  },
  { additionalProperties: false },
);
export type GalleryRemove = Static<typeof GalleryRemovePayload>;

/** What the edge answers to both gallery commands (the command result's `result`). */
export interface GalleryCommandResult {
  version: number;
  size: number;
  /** remove: the member ids that were present and are now gone. */
  removed?: string[];
  /** remove: ids that were not in the gallery (already gone: erasure is still confirmed). */
  absent?: string[];
  /** upsert: members removed at a later version than this upsert (not re-added) [VISION-GALLERY-3]. */
  skipped?: string[];
}

registerCommandType(VISION_GALLERY_UPSERT, {
  executor: 'gateway',
  payload: GalleryUpsertPayload,
  description: "add or replace consenting members' sealed face embeddings in the edge gallery",
});
registerCommandType(VISION_GALLERY_REMOVE, {
  executor: 'gateway',
  payload: GalleryRemovePayload,
  description: 'remove members from the edge gallery (consent withdrawn or erasure), confirmed by version',
});

export const VisionOccupancyPayload = Type.Object(
  {
    ts: Type.Optional(Type.Integer({ minimum: 0 })),
    camera: CameraId,
    /** People (faces) in view now. No identity: counts only [VISION-PRIVACY-1]. */
    persons: Type.Integer({ minimum: 0, maximum: 1000 }),
    /** Tracks that left during the window and their mean dwell. */
    departed: Type.Integer({ minimum: 0 }),
    meanDwellMs: Type.Integer({ minimum: 0 }),
    windowMs: Type.Integer({ minimum: 1 }),
  },
  { additionalProperties: false },
);
export type VisionOccupancy = Static<typeof VisionOccupancyPayload>;

registerEventType(VISION_OCCUPANCY, {
  lane: 'telemetry',
  source: 'device',
  payload: VisionOccupancyPayload,
  description: 'people count and dwell per camera for store analytics (no identity, no image)',
});

// ---------------------------------------------------------------------------------------
// Face model arithmetic (BlazeFace front model + FaceRes descriptor, as shipped in
// @vladmandic/human; pre/post-processing follows human's src/face/blazeface.ts).
// ---------------------------------------------------------------------------------------

export const BLAZEFACE_INPUT = 256;
export const FACERES_INPUT = 224;
export const EMBEDDING_DIM = 1024;
/** BlazeFace outputs per anchor: score logit, box (cx, cy, w, h), 6 landmarks (x, y). */
const BLAZE_STRIDE = 17;

/** Anchor centres in input pixels: strides 16 and 32 px with 2 and 6 anchors per cell (896 for 256). */
export function blazefaceAnchors(inputSize: number = BLAZEFACE_INPUT): Float32Array {
  const spec = { strides: [inputSize / 16, inputSize / 8], anchors: [2, 6] };
  const out: number[] = [];
  for (let i = 0; i < spec.strides.length; i++) {
    const stride = spec.strides[i]!;
    const grid = Math.floor((inputSize + stride - 1) / stride);
    for (let y = 0; y < grid; y++) {
      for (let x = 0; x < grid; x++) {
        for (let n = 0; n < spec.anchors[i]!; n++) out.push(stride * (x + 0.5), stride * (y + 0.5));
      }
    }
  }
  return new Float32Array(out);
}

export interface FaceBox {
  /** Pixel box in the source frame. */
  x: number;
  y: number;
  w: number;
  h: number;
  score: number;
  /** 6 landmarks in source pixels: right eye, left eye, nose, mouth, right ear, left ear. */
  landmarks: Array<[number, number]>;
}

export interface DetectOptions {
  minScore: number;
  iou: number;
  maxFaces: number;
  /** Faces narrower than this many source pixels are ignored (too small to recognise). */
  minSizePx: number;
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/**
 * Decodes raw BlazeFace output rows (`[anchors, 17]`, row order = anchor order) into
 * boxes in the source frame, then greedy non-maximum suppression. `frameW/H` is the
 * frame that was stretched to the square input.
 */
export function decodeBlazeface(
  raw: Float32Array,
  anchors: Float32Array,
  frameW: number,
  frameH: number,
  o: DetectOptions,
  inputSize: number = BLAZEFACE_INPUT,
): FaceBox[] {
  const n = anchors.length / 2;
  if (raw.length !== n * BLAZE_STRIDE) throw new RangeError(`blazeface output ${raw.length} != ${n * 17}`);
  const sx = frameW / inputSize;
  const sy = frameH / inputSize;
  const cands: FaceBox[] = [];
  const logitMin = Math.log(o.minScore / (1 - o.minScore));
  for (let i = 0; i < n; i++) {
    const r = i * BLAZE_STRIDE;
    if (raw[r]! < logitMin) continue;
    const ax = anchors[2 * i]!;
    const ay = anchors[2 * i + 1]!;
    const cx = raw[r + 1]! + ax;
    const cy = raw[r + 2]! + ay;
    const w = raw[r + 3]!;
    const h = raw[r + 4]!;
    const landmarks: Array<[number, number]> = [];
    for (let k = 0; k < 6; k++) {
      landmarks.push([(raw[r + 5 + 2 * k]! + ax) * sx, (raw[r + 6 + 2 * k]! + ay) * sy]);
    }
    cands.push({
      x: (cx - w / 2) * sx,
      y: (cy - h / 2) * sy,
      w: w * sx,
      h: h * sy,
      score: sigmoid(raw[r]!),
      landmarks,
    });
  }
  return nms(cands, o.iou, o.maxFaces).filter((b) => b.w >= o.minSizePx);
}

export function iou(
  a: Pick<FaceBox, 'x' | 'y' | 'w' | 'h'>,
  b: Pick<FaceBox, 'x' | 'y' | 'w' | 'h'>,
): number {
  const x1 = Math.max(a.x, b.x);
  const y1 = Math.max(a.y, b.y);
  const x2 = Math.min(a.x + a.w, b.x + b.w);
  const y2 = Math.min(a.y + a.h, b.y + b.h);
  const inter = Math.max(0, x2 - x1) * Math.max(0, y2 - y1);
  const union = a.w * a.h + b.w * b.h - inter;
  return union > 0 ? inter / union : 0;
}

function nms(cands: FaceBox[], threshold: number, max: number): FaceBox[] {
  cands.sort((a, b) => b.score - a.score);
  const kept: FaceBox[] = [];
  for (const c of cands) {
    if (kept.length >= max) break;
    if (kept.every((k) => iou(k, c) <= threshold)) kept.push(c);
  }
  return kept;
}

/**
 * The face crop the descriptor model sees: the detector box enlarged 1.4× and made
 * square around its centre (human's enlargeBox + squarifyBox), plus the in-plane roll
 * from the eye landmarks so the crop can be rotated upright (alignment).
 */
export function faceCrop(box: FaceBox, scale = 1.4): { cx: number; cy: number; size: number; roll: number } {
  const cx = box.x + box.w / 2;
  const cy = box.y + box.h / 2;
  const size = Math.max(box.w, box.h) * scale;
  const [re, le] = box.landmarks;
  const roll = re && le ? Math.atan2(le[1] - re[1], le[0] - re[0]) : 0;
  return { cx, cy, size, roll };
}

/** L2-normalises in place and returns the vector (a zero vector stays zero). */
export function l2normalize(v: Float32Array): Float32Array {
  let s = 0;
  for (let i = 0; i < v.length; i++) s += v[i]! * v[i]!;
  const inv = s > 0 ? 1 / Math.sqrt(s) : 0;
  for (let i = 0; i < v.length; i++) v[i] = v[i]! * inv;
  return v;
}

/** Similarity of two L2-normalised embeddings: cosine, clamped to 0..1 (what member.recognized carries). */
export function similarity(a: Float32Array, b: Float32Array): number {
  let d = 0;
  for (let i = 0; i < a.length; i++) d += a[i]! * b[i]!;
  return Math.min(1, Math.max(0, d));
}

// ---------------------------------------------------------------------------------------
// Sealed gallery entries [VISION-GALLERY-2]: int8-quantised embedding, AES-256-GCM with the
// gateway's gallery key, the gateway and member ids as associated data (an entry cannot
// be replayed to another gateway or relabelled as another member).
// ---------------------------------------------------------------------------------------

const SEAL_VERSION = 1;

/** int8 quantisation of an L2-normalised embedding: q = round(v / scale), scale = max|v| / 127. */
export function quantize(v: Float32Array): { q: Int8Array; scale: number } {
  let m = 0;
  for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]!));
  const scale = m > 0 ? m / 127 : 1;
  const q = new Int8Array(v.length);
  for (let i = 0; i < v.length; i++) q[i] = Math.round(v[i]! / scale);
  return { q, scale };
}

export function dequantize(q: Int8Array, scale: number): Float32Array {
  const v = new Float32Array(q.length);
  for (let i = 0; i < q.length; i++) v[i] = q[i]! * scale;
  return l2normalize(v);
}

function aad(gateway: string, memberId: string): Buffer {
  return Buffer.from(`storelink-gallery/v${SEAL_VERSION}/${gateway}/${memberId}`, 'utf8');
}

/** Seals one member's embedding for one gateway (key: 32 bytes). Returns base64. */
export function sealEmbedding(
  key: Buffer,
  gateway: string,
  memberId: string,
  embedding: Float32Array,
): string {
  if (key.length !== 32) throw new RangeError('gallery key must be 32 bytes');
  const { q, scale } = quantize(embedding);
  const plain = Buffer.alloc(4 + q.length);
  plain.writeFloatLE(scale, 0);
  Buffer.from(q.buffer, q.byteOffset, q.byteLength).copy(plain, 4);
  const iv = randomBytes(12);
  const c = createCipheriv('aes-256-gcm', key, iv);
  c.setAAD(aad(gateway, memberId));
  const body = Buffer.concat([c.update(plain), c.final()]);
  return Buffer.concat([Buffer.from([SEAL_VERSION]), iv, c.getAuthTag(), body]).toString('base64');
}

/** Opens a sealed entry; throws if the key, gateway or member id do not match (GCM tag). */
export function openEmbedding(key: Buffer, gateway: string, memberId: string, sealed: string): Float32Array {
  const buf = Buffer.from(sealed, 'base64');
  if (buf.length < 1 + 12 + 16 + 4 || buf[0] !== SEAL_VERSION) throw new Error('not a sealed gallery entry');
  const d = createDecipheriv('aes-256-gcm', key, buf.subarray(1, 13));
  d.setAAD(aad(gateway, memberId));
  d.setAuthTag(buf.subarray(13, 29));
  const plain = Buffer.concat([d.update(buf.subarray(29)), d.final()]);
  const scale = plain.readFloatLE(0);
  const q = new Int8Array(plain.length - 4);
  for (let i = 0; i < q.length; i++) q[i] = plain.readInt8(4 + i);
  return dequantize(q, scale);
}

// FaceRes' load-time graph rewrite [VISION-RUNTIME-3], shared by the edge pipeline and the cloud's enrolment.
export { fuseRelu6Chains, type GraphNode, scalarWeights, type WeightSpec } from './vision-graph.ts';
