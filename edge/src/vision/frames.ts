import { vision } from '@storelink/protocols';
import sharp, { type Metadata } from 'sharp';
import type { RgbFrame } from './model.ts';

/**
 * Per-frame pieces of the pipeline: decode + resize (sharp) and its limits, run in a vision
 * worker; the IoU tracker and the embedding schedule, run in the main thread between a
 * worker's two steps (detect, then embed the tracks that need it) [VISION-PIPE-4].
 */

export const FRAME_LIMITS = { minSide: 32, maxSide: 4096, maxBytes: 2 * 1024 * 1024 } as const;

export interface PipelineOptions {
  /** Frames are resized to fit inside this box before detection (camera resolution is not trusted). */
  maxWidth: number;
  maxHeight: number;
  detect: vision.DetectOptions;
  /**
   * An unidentified track is re-embedded after reembedMs, then after 2×, 4×, up to 8×
   * (embedding is the costly step, and most people in a store are not members); an
   * identified track is never embedded again [VISION-PIPE-3].
   */
  reembedMs: number;
  /** A track not seen for this long has left the view (dwell ends). */
  lostMs: number;
}

export class FrameError extends Error {
  constructor(
    readonly reason: 'corrupt' | 'size' | 'format',
    message: string,
  ) {
    super(message);
  }
}

/** Decodes a camera JPEG into RGB, refusing what is not a sane JPEG of a sane size. */
export async function decodeFrame(
  jpeg: Uint8Array,
  o: Pick<PipelineOptions, 'maxWidth' | 'maxHeight'>,
): Promise<RgbFrame> {
  if (jpeg.length > FRAME_LIMITS.maxBytes) {
    throw new FrameError('size', `frame is ${jpeg.length} bytes, more than ${FRAME_LIMITS.maxBytes}`);
  }
  if (jpeg.length < 4 || jpeg[0] !== 0xff || jpeg[1] !== 0xd8) {
    throw new FrameError('format', 'frame is not a JPEG (no FF D8 start-of-image marker)');
  }
  let meta: Metadata;
  try {
    meta = await sharp(jpeg).metadata();
  } catch (e) {
    throw new FrameError('corrupt', `JPEG header cannot be read: ${(e as Error).message}`);
  }
  const w = meta.width ?? 0;
  const h = meta.height ?? 0;
  if (
    w < FRAME_LIMITS.minSide ||
    h < FRAME_LIMITS.minSide ||
    w > FRAME_LIMITS.maxSide ||
    h > FRAME_LIMITS.maxSide
  ) {
    throw new FrameError(
      'size',
      `frame is ${w}x${h}; each side must be ${FRAME_LIMITS.minSide}..${FRAME_LIMITS.maxSide} px`,
    );
  }
  try {
    // failOn 'error': a truncated or scribbled JPEG is refused, not decoded into grey garbage.
    const { data, info } = await sharp(jpeg, { failOn: 'error' })
      .removeAlpha()
      .resize({ width: o.maxWidth, height: o.maxHeight, fit: 'inside', withoutEnlargement: true })
      .raw()
      .toBuffer({ resolveWithObject: true });
    return {
      data: new Uint8Array(data.buffer, data.byteOffset, data.length),
      width: info.width,
      height: info.height,
    };
  } catch (e) {
    throw new FrameError('corrupt', `JPEG cannot be decoded: ${(e as Error).message}`);
  }
}

export interface Track {
  id: number;
  box: vision.FaceBox;
  firstSeen: number;
  lastSeen: number;
  lastEmbedAt: number;
  embeds: number;
  /** The main thread identified this track: no more embeddings for it. */
  settled: boolean;
}

export interface FaceResult {
  track: number;
  /** Box in the decoded frame's pixels and that frame's size (zones are fractions of it). */
  box: { x: number; y: number; w: number; h: number; score: number };
  /** Present when this frame embedded the face (new track, or reembedMs elapsed). */
  embedding?: Float32Array;
}

export interface FrameResult {
  width: number;
  height: number;
  faces: FaceResult[];
  /** Tracks in view after this frame (the people count: no identity). */
  persons: number;
  /** Dwell of tracks that left the view, ms. */
  departedDwellMs: number[];
  ms: { decode: number; detect: number; embed: number };
}

/** Per-camera IoU tracker: a face that overlaps last frame's box keeps its track. */
export class Tracker {
  private tracks: Track[] = [];
  private nextId = 1;

  update(boxes: vision.FaceBox[], now: number, lostMs: number): { assigned: Track[]; departed: Track[] } {
    // Tracks unseen for lostMs have left: retire them first, so a new face at the same
    // spot starts a new track (and is embedded) instead of inheriting an old one.
    const departed = this.tracks.filter((t) => now - t.lastSeen > lostMs);
    if (departed.length > 0) this.tracks = this.tracks.filter((t) => now - t.lastSeen <= lostMs);
    const free = new Set(this.tracks);
    const assigned: Track[] = [];
    for (const b of boxes) {
      let best: Track | undefined;
      let bestIou = 0.2;
      for (const t of free) {
        const v = vision.iou(t.box, b);
        if (v > bestIou) {
          best = t;
          bestIou = v;
        }
      }
      if (best) {
        free.delete(best);
        best.box = b;
        best.lastSeen = now;
        assigned.push(best);
      } else {
        const t: Track = {
          id: this.nextId++,
          box: b,
          firstSeen: now,
          lastSeen: now,
          lastEmbedAt: Number.NEGATIVE_INFINITY,
          embeds: 0,
          settled: false,
        };
        this.tracks.push(t);
        assigned.push(t);
      }
    }
    return { assigned, departed };
  }

  get size(): number {
    return this.tracks.length;
  }

  /** [VISION-PIPE-3] the main thread identified `id`: stop embedding it. */
  settle(id: number): void {
    const t = this.tracks.find((x) => x.id === id);
    if (t) t.settled = true;
  }
}

/** [VISION-PIPE-3] due for an embedding: never once settled; backoff 1×, 2×, 4×, 8× reembedMs. */
export function embedDue(t: Track, at: number, reembedMs: number): boolean {
  if (t.settled) return false;
  if (t.embeds === 0) return true;
  return at - t.lastEmbedAt >= reembedMs * Math.min(8, 2 ** (t.embeds - 1));
}
