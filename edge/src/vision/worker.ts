import { parentPort, workerData } from 'node:worker_threads';
import { FrameError, type PipelineOptions, processFrame, Tracker } from './frames.ts';
import { type BackendName, loadFaceModels } from './model.ts';

/** Messages to and from the vision worker (edge/src/vision/worker-client.ts is the other side). */
export interface WorkerInit {
  backend?: BackendName;
  modelsDir?: string;
  threads?: number;
  pipeline: PipelineOptions;
}
export interface FrameRequest {
  kind: 'frame';
  seq: number;
  camera: string;
  at: number;
  embed: boolean;
  jpeg: Uint8Array;
}
/** [VISION-PIPE-3] the main thread identified a track: the worker stops embedding it. */
export interface SettleRequest {
  kind: 'settle';
  camera: string;
  track: number;
}
export type WorkerReply =
  | { kind: 'ready'; backend: BackendName; threads: number }
  | { kind: 'result'; seq: number; ok: true; result: import('./frames.ts').FrameResult }
  | { kind: 'result'; seq: number; ok: false; reason: string; message: string }
  | { kind: 'fatal'; message: string };

const port = parentPort!;
const init = workerData as WorkerInit;
const trackers = new Map<string, Tracker>();

try {
  const models = await loadFaceModels({
    ...(init.backend ? { backend: init.backend } : {}),
    ...(init.modelsDir ? { dir: init.modelsDir } : {}),
    ...(init.threads ? { threads: init.threads } : {}),
  });
  port.on('message', (m: FrameRequest | SettleRequest) => {
    if (m.kind === 'settle') {
      trackers.get(m.camera)?.settle(m.track);
      return;
    }
    let tracker = trackers.get(m.camera);
    if (!tracker) {
      tracker = new Tracker();
      trackers.set(m.camera, tracker);
    }
    processFrame(models, tracker, m.jpeg, m.at, { ...init.pipeline, embed: m.embed }).then(
      (result) => {
        const transfer = result.faces.flatMap((f) =>
          f.embedding ? [f.embedding.buffer as ArrayBuffer] : [],
        );
        port.postMessage({ kind: 'result', seq: m.seq, ok: true, result } satisfies WorkerReply, transfer);
      },
      (e: unknown) => {
        const reason = e instanceof FrameError ? e.reason : 'inference';
        port.postMessage({
          kind: 'result',
          seq: m.seq,
          ok: false,
          reason,
          message: (e as Error).message,
        } satisfies WorkerReply);
      },
    );
  });
  port.postMessage({ kind: 'ready', backend: models.backend, threads: models.threads } satisfies WorkerReply);
} catch (e) {
  port.postMessage({ kind: 'fatal', message: (e as Error).message } satisfies WorkerReply);
}
