import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import sharp from 'sharp';

/**
 * Camera images from the sample photos that ship inside @vladmandic/human (nothing is
 * downloaded): `screenshot-facematch.jpg` holds a 6 × 18 grid of extracted faces, sorted
 * by human's own similarity to the man in the first cell — the first eight cells of row 0
 * are photos of that same man (human scored them 100 % … 64.9 %), which gives genuine
 * pairs; rows 2–5 are other people (impostors). Plus synthetic frames without faces.
 */

const require = createRequire(import.meta.url);
export function humanAsset(name: string): string {
  // human's exports hide package.json: its main entry is dist/human.node.js.
  return join(dirname(dirname(require.resolve('@vladmandic/human'))), 'assets', name);
}

const GRID = { file: 'screenshot-facematch.jpg', left: 0, top: 282, cell: 1920 / 18, rows: 6, cols: 18 };
/** Row 0, cells 0..7: the same man in eight different photos. */
export const SAME_PERSON_CELLS: ReadonlyArray<readonly [number, number]> = [0, 1, 2, 3, 4, 5, 6, 7].map(
  (c) => [0, c] as const,
);
/** Rows 2..5: other people (one cell per person is not guaranteed; a few may repeat). */
export function otherPeopleCells(): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (let r = 2; r < GRID.rows; r++) for (let c = 0; c < GRID.cols; c++) out.push([r, c]);
  return out;
}

let gridImage: Promise<{ data: Buffer; width: number; height: number }> | undefined;
function grid() {
  gridImage ??= sharp(humanAsset(GRID.file))
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true })
    .then(({ data, info }) => ({ data, width: info.width, height: info.height }));
  return gridImage;
}

/** One face cell of the grid as raw RGB, `size` px square (upscaled from ~106 px). */
export async function faceCell(row: number, col: number, size = 200): Promise<Buffer> {
  const g = await grid();
  const left = Math.round(GRID.left + col * GRID.cell) + 2;
  const top = Math.round(GRID.top + row * GRID.cell) + 2;
  const side = Math.floor(GRID.cell) - 4;
  return sharp(g.data, { raw: { width: g.width, height: g.height, channels: 3 } })
    .extract({ left, top, width: side, height: side })
    .resize(size, size)
    .png()
    .toBuffer();
}

/** A synthetic face-free scene: a shelf-like pattern of coloured boxes on a gradient. */
export async function emptyScene(width: number, height: number, seed = 1): Promise<Buffer> {
  const raw = Buffer.alloc(width * height * 3);
  let s = seed >>> 0 || 1;
  const rnd = () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const boxes = Array.from({ length: 12 }, () => ({
    x: rnd() * width,
    y: rnd() * height,
    w: 20 + rnd() * width * 0.2,
    h: 20 + rnd() * height * 0.2,
    c: [rnd() * 255, rnd() * 255, rnd() * 255],
  }));
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      let c = [(x / width) * 120 + 60, (y / height) * 120 + 60, 140];
      for (const b of boxes) if (x >= b.x && x < b.x + b.w && y >= b.y && y < b.y + b.h) c = b.c;
      raw[i] = c[0]!;
      raw[i + 1] = c[1]!;
      raw[i + 2] = c[2]!;
    }
  }
  return sharp(raw, { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 85 })
    .toBuffer();
}

export interface Placement {
  row: number;
  col: number;
  /** Top-left corner and side in the scene, pixels. */
  x: number;
  y: number;
  size: number;
}

/** A camera frame (JPEG) with faces from the grid pasted onto a face-free scene. */
export async function sceneWithFaces(
  width: number,
  height: number,
  faces: Placement[],
  seed = 1,
): Promise<Buffer> {
  const base = await emptyScene(width, height, seed);
  const layers = await Promise.all(
    faces.map(async (f) => ({ input: await faceCell(f.row, f.col, f.size), left: f.x, top: f.y })),
  );
  return sharp(base).composite(layers).jpeg({ quality: 90 }).toBuffer();
}

/** A frame whose JPEG stream is cut and scribbled over: decoders must refuse it. */
export function corruptJpeg(jpeg: Buffer): Buffer {
  const b = Buffer.from(jpeg.subarray(0, Math.floor(jpeg.length / 3)));
  for (let i = 200; i < b.length; i += 7) b[i] = 0xff;
  return b;
}
