import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { vision } from '@storelink/protocols';
import * as tf from '@tensorflow/tfjs-core';
import { type GraphModel, loadGraphModel } from '@tensorflow/tfjs-converter';
import { enableWasmThreadsInNode } from './wasm-threads.ts';

/**
 * The face models on the device (docs/vision.md "Runtime"): BlazeFace (detection) and
 * FaceRes (1024-d descriptor) from the files shipped inside @vladmandic/human, loaded from
 * disk through a small IO handler — nothing is fetched at run time [VISION-RUNTIME-1].
 * Backend: @tensorflow/tfjs-node when it is installed (native TensorFlow), otherwise
 * tfjs-backend-wasm with SIMD, its .wasm files read from node_modules.
 */

const require = createRequire(import.meta.url);

export function humanModelsDir(): string {
  // human's exports hide package.json: its main entry is dist/human.node.js.
  return join(dirname(dirname(require.resolve('@vladmandic/human'))), 'models');
}

/**
 * tfjs IOHandler that reads a graph model's JSON + weight shards from a directory.
 * `inputSide` re-declares a fully convolutional model's input side (measurement only);
 * `fuseRelu6` rewrites spelled-out ReLU6 chains into the Relu6 op [VISION-RUNTIME-3].
 */
export function diskModel(
  dir: string,
  name: string,
  o: { inputSide?: number; fuseRelu6?: boolean; onLoad?: (info: { relu6Fused: number }) => void } = {},
): tf.io.IOHandler {
  return {
    load: async () => {
      const json = JSON.parse(await readFile(join(dir, `${name}.json`), 'utf8')) as {
        modelTopology: {
          node?: Array<{ op: string; attr?: { shape?: { shape?: { dim?: Array<{ size: string }> } } } }>;
        };
        weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
        format?: string;
        generatedBy?: string;
        convertedBy?: string;
        signature?: object;
        userDefinedMetadata?: Record<string, object>;
      };
      if (o.inputSide) setInputSide(json, o.inputSide);
      const shards = await Promise.all(
        json.weightsManifest.flatMap((g) => g.paths.map((p) => readFile(join(dir, p)))),
      );
      const all = Buffer.concat(shards);
      const weightSpecs = json.weightsManifest.flatMap((g) => g.weights);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      if (o.fuseRelu6) {
        const nodes = (json.modelTopology.node ?? []) as vision.GraphNode[];
        const relu6Fused = vision.fuseRelu6Chains(
          nodes,
          vision.scalarWeights(weightSpecs as vision.WeightSpec[], weightData),
        );
        o.onLoad?.({ relu6Fused });
      }
      return {
        modelTopology: json.modelTopology,
        weightSpecs,
        weightData,
        ...(json.format ? { format: json.format } : {}),
        ...(json.generatedBy ? { generatedBy: json.generatedBy } : {}),
        ...(json.convertedBy ? { convertedBy: json.convertedBy } : {}),
        ...(json.signature ? { signature: json.signature } : {}),
        ...(json.userDefinedMetadata ? { userDefinedMetadata: json.userDefinedMetadata } : {}),
      };
    },
  };
}

/**
 * FaceRes is fully convolutional up to its global pooling, so it runs at other input sides;
 * the placeholder (and the signature, which the executor checks) say 224, so both are rewritten.
 */
function setInputSide(json: { modelTopology: object; signature?: object }, side: number): void {
  const dims = [{ size: '-1' }, { size: String(side) }, { size: String(side) }, { size: '3' }];
  const topo = json.modelTopology as { node?: Array<{ op: string; attr?: { shape?: { shape?: object } } }> };
  for (const n of topo.node ?? [])
    if (n.op === 'Placeholder' && n.attr?.shape) n.attr.shape.shape = { dim: dims };
  const sig = json.signature as { inputs?: Record<string, { tensorShape?: object }> } | undefined;
  for (const i of Object.values(sig?.inputs ?? {})) i.tensorShape = { dim: dims };
}

export type BackendName = 'tensorflow' | 'wasm';

/**
 * Picks the backend once per thread: tfjs-node if it can be imported ('tensorflow'),
 * else wasm. `prefer: 'wasm'` skips the probe (benchmarks compare both).
 */
export async function initBackend(prefer?: BackendName, threads = 1): Promise<BackendName> {
  if (prefer !== 'wasm') {
    try {
      // A variable specifier: tfjs-node is optional and absent here (its installer downloads libtensorflow).
      const nodeBackend = '@tensorflow/tfjs-node';
      await import(nodeBackend);
      if (await tf.setBackend('tensorflow')) return 'tensorflow';
    } catch {
      if (prefer === 'tensorflow') throw new Error('@tensorflow/tfjs-node is not installed');
    }
  }
  const wasm = await import('@tensorflow/tfjs-backend-wasm');
  // A directory path (trailing slash): the emscripten loader reads the .wasm from disk in Node.
  wasm.setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'))}/dist/`);
  const restore = threads > 1 ? enableWasmThreadsInNode(threads) : undefined;
  if (threads > 1) {
    tf.env().set('WASM_HAS_MULTITHREAD_SUPPORT', true);
    wasm.setThreadsCount(threads);
  }
  try {
    if (!(await tf.setBackend('wasm'))) throw new Error('tfjs wasm backend failed to initialise');
    await tf.ready();
  } finally {
    restore?.();
  }
  return 'wasm';
}

/** XNNPACK threads the wasm backend really runs with (1 = single-threaded build or no pool). */
export function wasmThreads(): number {
  const b = tf.backend() as unknown as { wasm?: { tfjs?: { getThreadsCount?: () => number } } };
  return b.wasm?.tfjs?.getThreadsCount?.() ?? 1;
}

/** A decoded RGB frame (sharp raw output): `data.length === width * height * 3`. */
export interface RgbFrame {
  data: Uint8Array;
  width: number;
  height: number;
}

export interface FaceModels {
  readonly backend: BackendName;
  /** Threads the backend computes with (wasm: XNNPACK pool size; [VISION-RUNTIME-2]). */
  readonly threads: number;
  /** ReLU6 chains in FaceRes rewritten into one op at load [VISION-RUNTIME-3]. */
  readonly relu6Fused: number;
  detect(frame: RgbFrame, o: vision.DetectOptions): Promise<vision.FaceBox[]>;
  /** L2-normalised 1024-d descriptor of each face (aligned crops, one batch). */
  embed(frame: RgbFrame, faces: vision.FaceBox[]): Promise<Float32Array[]>;
  dispose(): void;
}

export async function loadFaceModels(
  o: {
    dir?: string;
    backend?: BackendName;
    threads?: number;
    /** FaceRes input side (default 224, as the cloud enrols); a smaller side is for measurement only. */
    embedInput?: number;
    /** [VISION-RUNTIME-3] default true; false runs FaceRes' graph as exported (tests compare). */
    fuseRelu6?: boolean;
  } = {},
): Promise<FaceModels> {
  const backend = await initBackend(o.backend, o.threads);
  const dir = o.dir ?? humanModelsDir();
  let relu6Fused = 0;
  const [detector, describer] = await Promise.all([
    loadGraphModel(diskModel(dir, 'blazeface')),
    loadGraphModel(
      diskModel(dir, 'faceres', {
        ...(o.embedInput && o.embedInput !== vision.FACERES_INPUT ? { inputSide: o.embedInput } : {}),
        fuseRelu6: o.fuseRelu6 !== false,
        onLoad: (i) => {
          relu6Fused = i.relu6Fused;
        },
      }),
    ),
  ]);
  const anchors = vision.blazefaceAnchors();
  // Warm-up: the first execute compiles kernels; do it at load, not on the first frame.
  tf.tidy(() => {
    const warm = tf.zeros([1, vision.BLAZEFACE_INPUT, vision.BLAZEFACE_INPUT, 3]);
    for (const t of detector.execute(warm) as tf.Tensor[]) t.dataSync();
  });
  return {
    backend,
    threads: backend === 'wasm' ? wasmThreads() : 1,
    relu6Fused,
    detect: (frame, opts) => detectFaces(detector, anchors, frame, opts),
    embed: (frame, faces) => embedFaces(describer, frame, faces, o.embedInput ?? vision.FACERES_INPUT),
    dispose() {
      detector.dispose();
      describer.dispose();
    },
  };
}

function frameTensor(frame: RgbFrame): tf.Tensor4D {
  return tf.tensor4d(frame.data, [1, frame.height, frame.width, 3], 'int32');
}

async function detectFaces(
  model: GraphModel,
  anchors: Float32Array,
  frame: RgbFrame,
  o: vision.DetectOptions,
): Promise<vision.FaceBox[]> {
  const rows = tf.tidy(() => {
    const size = vision.BLAZEFACE_INPUT;
    const input = tf.sub(
      tf.div(tf.image.resizeBilinear(tf.cast(frameTensor(frame), 'float32'), [size, size]), 127.5),
      1,
    );
    // Four heads: scores and regressors for the 16 px grid (512 anchors) and the 32 px
    // grid (384); rows in anchor order = [512 grid ; 384 grid], each [score, 16 regs].
    const out = (model.execute(input) as tf.Tensor[]).slice().sort((a, b) => a.size - b.size);
    const [s384, s512, r384, r512] = out as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
    return tf.concat([tf.concat([s512, r512], 2), tf.concat([s384, r384], 2)], 1);
  });
  const raw = (await rows.data()) as Float32Array;
  rows.dispose();
  return vision.decodeBlazeface(raw, anchors, frame.width, frame.height, o);
}

/** FaceRes' 1024-d descriptor output (global average pooling of the last feature map). */
const DESCRIPTOR = 'global_pooling/Mean';

async function embedFaces(
  model: GraphModel,
  frame: RgbFrame,
  faces: vision.FaceBox[],
  side: number,
): Promise<Float32Array[]> {
  if (faces.length === 0) return [];
  const out = tf.tidy(() => {
    const img = tf.cast(frameTensor(frame), 'float32');
    const crops = faces.map((f) => alignedCrop(img, frame, f, side));
    const batch = tf.concat(crops, 0);
    // Only the descriptor: the age and gender heads are not computed.
    return model.execute(batch, DESCRIPTOR) as tf.Tensor;
  });
  const data = (await out.data()) as Float32Array;
  out.dispose();
  return faces.map((_, i) =>
    vision.l2normalize(data.slice(i * vision.EMBEDDING_DIM, (i + 1) * vision.EMBEDDING_DIM)),
  );
}

/**
 * Alignment + crop: a square window √2 larger than the face crop is cut out and resized,
 * rotated by the eye-line roll so the eyes are level, then the central face crop is
 * resized to FaceRes' 224×224 input (values 0..255, as human feeds it).
 */
function alignedCrop(img: tf.Tensor4D, frame: RgbFrame, face: vision.FaceBox, n: number): tf.Tensor4D {
  const { cx, cy, size, roll } = vision.faceCrop(face);
  const outer = size * Math.SQRT2;
  const m = Math.round(n * Math.SQRT2);
  const box = [
    (cy - outer / 2) / frame.height,
    (cx - outer / 2) / frame.width,
    (cy + outer / 2) / frame.height,
    (cx + outer / 2) / frame.width,
  ];
  const big = tf.image.cropAndResize(img, [box], [0], [m, m]);
  // Same steps as the cloud's enrolment (cloud/src/vision/embedder.ts): level only past 5°.
  const level = Math.abs(roll) < (5 * Math.PI) / 180 ? big : tf.image.rotateWithOffset(big, roll, 0);
  const inner = (1 - 1 / Math.SQRT2) / 2;
  return tf.image.cropAndResize(level, [[inner, inner, 1 - inner, 1 - inner]], [0], [n, n]);
}
