import { parentPort, workerData } from 'node:worker_threads';
import type { vision } from '@storelink/protocols';
import { decodeFrame, FrameError, type PipelineOptions } from './frames.ts';
import { type BackendName, loadFaceModels, type RgbFrame } from './model.ts';

/**
 * The vision worker (edge/src/vision/service.ts is the other side). A frame takes two
 * steps [VISION-PIPE-4]: `frame` (decode + detect; the worker keeps the decoded frame)
 * and `embed` (the faces the main thread's tracker wants embedded, possibly none; the
 * frame is then dropped). Tracking lives in the main thread so that several workers can
 * take frames of one camera in turn while every camera keeps one track history.
 */
export interface WorkerInit {
  backend?: BackendName;
  modelsDir?: string;
  threads?: number;
  pipeline: Pick<PipelineOptions, 'maxWidth' | 'maxHeight' | 'detect'>;
}
export interface FrameRequest {
  kind: 'frame';
  seq: number;
  jpeg: Uint8Array;
}
export interface EmbedRequest {
  kind: 'embed';
  seq: number;
  faces: vision.FaceBox[];
}
export type WorkerReply =
  | { kind: 'ready'; backend: BackendName; threads: number }
  | {
      kind: 'detected';
      seq: number;
      ok: true;
      width: number;
      height: number;
      faces: vision.FaceBox[];
      ms: { decode: number; detect: number };
    }
  | { kind: 'detected'; seq: number; ok: false; reason: string; message: string }
  | { kind: 'embedded'; seq: number; ok: true; embeddings: Float32Array[]; ms: number }
  | { kind: 'embedded'; seq: number; ok: false; reason: string; message: string }
  | { kind: 'fatal'; message: string };

const port = parentPort!;
const init = workerData as WorkerInit;
/** Decoded frames between their two steps (one per frame in this worker: at most one). */
const held = new Map<number, RgbFrame>();

function failure(e: unknown): { reason: string; message: string } {
  return { reason: e instanceof FrameError ? e.reason : 'inference', message: (e as Error).message };
}

try {
  const models = await loadFaceModels({
    ...(init.backend ? { backend: init.backend } : {}),
    ...(init.modelsDir ? { dir: init.modelsDir } : {}),
    ...(init.threads ? { threads: init.threads } : {}),
  });
  const detect = async (m: FrameRequest): Promise<WorkerReply> => {
    try {
      const t0 = performance.now();
      const frame = await decodeFrame(m.jpeg, init.pipeline);
      const t1 = performance.now();
      const faces = await models.detect(frame, init.pipeline.detect);
      held.set(m.seq, frame);
      const ms = { decode: t1 - t0, detect: performance.now() - t1 };
      return { kind: 'detected', seq: m.seq, ok: true, width: frame.width, height: frame.height, faces, ms };
    } catch (e) {
      return { kind: 'detected', seq: m.seq, ok: false, ...failure(e) };
    }
  };
  const embed = async (m: EmbedRequest): Promise<WorkerReply> => {
    const frame = held.get(m.seq);
    held.delete(m.seq);
    try {
      if (!frame) throw new Error(`frame ${m.seq} is not held by this worker`);
      const t0 = performance.now();
      const embeddings = m.faces.length > 0 ? await models.embed(frame, m.faces) : [];
      return { kind: 'embedded', seq: m.seq, ok: true, embeddings, ms: performance.now() - t0 };
    } catch (e) {
      return { kind: 'embedded', seq: m.seq, ok: false, ...failure(e) };
    }
  };
  port.on('message', (m: FrameRequest | EmbedRequest) => {
    void (m.kind === 'frame' ? detect(m) : embed(m)).then((reply) => {
      const transfer =
        reply.kind === 'embedded' && reply.ok ? reply.embeddings.map((e) => e.buffer as ArrayBuffer) : [];
      port.postMessage(reply, transfer);
    });
  });
  port.postMessage({ kind: 'ready', backend: models.backend, threads: models.threads } satisfies WorkerReply);
} catch (e) {
  port.postMessage({ kind: 'fatal', message: (e as Error).message } satisfies WorkerReply);
}
