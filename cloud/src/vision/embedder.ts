import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { vision } from '@storelink/protocols';
import { type GraphModel, loadGraphModel } from '@tensorflow/tfjs-converter';
import * as tf from '@tensorflow/tfjs-core';
import sharp, { type OutputInfo } from 'sharp';
import { cloudError } from '../errors.ts';

/**
 * Enrolment embedding in the cloud: the member's own photo → one face → the same
 * 1024-d descriptor the edges compute. The arithmetic (anchors, decoding, crop geometry,
 * normalisation) is shared through @storelink/protocols `vision`; this file is only the
 * model I/O, a deliberate small copy of edge/src/vision/model.ts because cloud must not
 * import edge and protocols does no I/O (docs/vision.md "Where the face-model code lives").
 * Loaded lazily on the first enrolment: a cloud that never enrols never loads tfjs.
 */

const require = createRequire(import.meta.url);
const DETECT: vision.DetectOptions = { minScore: 0.6, iou: 0.3, maxFaces: 4, minSizePx: 48 };

/** `fuseRelu6`: the same load-time rewrite as the edge [VISION-RUNTIME-3] (half FaceRes' time, same descriptor). */
function diskModel(dir: string, name: string, o: { fuseRelu6?: boolean } = {}): tf.io.IOHandler {
  return {
    load: async () => {
      const j = JSON.parse(await readFile(join(dir, `${name}.json`), 'utf8')) as {
        modelTopology: { node?: vision.GraphNode[] };
        weightsManifest: Array<{ paths: string[]; weights: tf.io.WeightsManifestEntry[] }>;
        // The signature names the outputs execute() returns (FaceRes' descriptor is one of them).
        signature?: object;
      };
      const all = Buffer.concat(
        await Promise.all(j.weightsManifest.flatMap((g) => g.paths.map((p) => readFile(join(dir, p))))),
      );
      const weightSpecs = j.weightsManifest.flatMap((g) => g.weights);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      if (o.fuseRelu6)
        vision.fuseRelu6Chains(
          j.modelTopology.node ?? [],
          vision.scalarWeights(weightSpecs as vision.WeightSpec[], weightData),
        );
      return {
        modelTopology: j.modelTopology,
        weightSpecs,
        weightData,
        ...(j.signature ? { signature: j.signature } : {}),
      };
    },
  };
}

export interface Embedder {
  /** The L2-normalised descriptor of the single face in `photo` (JPEG/PNG bytes). */
  embedPhoto(photo: Buffer): Promise<Float32Array>;
}

export function createEmbedder(): Embedder {
  let models: Promise<{ det: GraphModel; desc: GraphModel; anchors: Float32Array }> | undefined;
  const load = async () => {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    wasm.setWasmPaths(`${dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json'))}/dist/`);
    await tf.setBackend('wasm');
    await tf.ready();
    const dir = join(dirname(dirname(require.resolve('@vladmandic/human'))), 'models');
    const [det, desc] = await Promise.all([
      loadGraphModel(diskModel(dir, 'blazeface')),
      loadGraphModel(diskModel(dir, 'faceres', { fuseRelu6: true })),
    ]);
    return { det, desc, anchors: vision.blazefaceAnchors() };
  };
  return {
    async embedPhoto(photo) {
      models ??= load();
      const m = await models;
      let raw: { data: Buffer; info: OutputInfo };
      try {
        raw = await sharp(photo, { failOn: 'error' })
          .removeAlpha()
          .resize({ width: 1024, height: 1024, fit: 'inside', withoutEnlargement: true })
          .raw()
          .toBuffer({ resolveWithObject: true });
      } catch (e) {
        throw cloudError('CLOUD_ERR_VISION_PHOTO', {
          reason: `not a readable image: ${(e as Error).message}`,
        });
      }
      const { width, height } = raw.info;
      const img = tf.tensor4d(new Uint8Array(raw.data), [1, height, width, 3], 'int32');
      try {
        const rows = tf.tidy(() => {
          const s = vision.BLAZEFACE_INPUT;
          const input = tf.sub(tf.div(tf.image.resizeBilinear(tf.cast(img, 'float32'), [s, s]), 127.5), 1);
          const out = (m.det.execute(input) as tf.Tensor[]).slice().sort((a, b) => a.size - b.size);
          const [s384, s512, r384, r512] = out as [tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor];
          return tf.concat([tf.concat([s512, r512], 2), tf.concat([s384, r384], 2)], 1);
        });
        const faces = vision.decodeBlazeface(
          (await rows.data()) as Float32Array,
          m.anchors,
          width,
          height,
          DETECT,
        );
        rows.dispose();
        if (faces.length !== 1) {
          throw cloudError('CLOUD_ERR_VISION_PHOTO', {
            reason: `the photo must show exactly one face, found ${faces.length}`,
          });
        }
        const { cx, cy, size, roll } = vision.faceCrop(faces[0]!);
        const out = tf.tidy(() => {
          const n = vision.FACERES_INPUT;
          const f = tf.cast(img, 'float32') as tf.Tensor4D;
          const outer = size * Math.SQRT2;
          const box = [
            (cy - outer / 2) / height,
            (cx - outer / 2) / width,
            (cy + outer / 2) / height,
            (cx + outer / 2) / width,
          ];
          const big = tf.image.cropAndResize(
            f,
            [box],
            [0],
            [Math.round(n * Math.SQRT2), Math.round(n * Math.SQRT2)],
          );
          const level = Math.abs(roll) < (5 * Math.PI) / 180 ? big : tf.image.rotateWithOffset(big, roll, 0);
          const inner = (1 - 1 / Math.SQRT2) / 2;
          const crop = tf.image.cropAndResize(level, [[inner, inner, 1 - inner, 1 - inner]], [0], [n, n]);
          const res = m.desc.execute(crop) as tf.Tensor[];
          return res.find((t) => t.shape[1] === vision.EMBEDDING_DIM)!;
        });
        const v = vision.l2normalize(((await out.data()) as Float32Array).slice());
        out.dispose();
        return v;
      } finally {
        img.dispose();
      }
    },
  };
}
