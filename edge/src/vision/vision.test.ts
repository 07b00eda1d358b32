import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { vision } from '@storelink/protocols';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  corruptJpeg,
  emptyScene,
  faceCell,
  sceneWithFaces,
} from '../../../firmware-sim/src/camera/images.ts';
import { waitFor } from '../../../test/helpers/wait.ts';
import { MemoryKv } from '../outbox/memory.ts';
import type { VisionConfig } from './config.ts';
import { decodeFrame, embedDue, Tracker } from './frames.ts';
import { Gallery } from './gallery.ts';
import { type FaceModels, loadFaceModels, type RgbFrame } from './model.ts';
import { SimdDot } from './simd.ts';
import { VisionService, zoneOf } from './service.ts';

// Real inference on the sample photos shipped in @vladmandic/human; models load once per file.
let models: FaceModels;
const DETECT = { minScore: 0.6, iou: 0.3, maxFaces: 8, minSizePx: 40 };
const KEY = Buffer.alloc(32, 7);
const GW = 'gw-vis';

async function rgb(jpeg: Buffer): Promise<RgbFrame> {
  return decodeFrame(jpeg, { maxWidth: 640, maxHeight: 480 });
}
async function embedOf(jpeg: Buffer): Promise<Float32Array> {
  const f = await rgb(jpeg);
  const faces = await models.detect(f, DETECT);
  expect(faces.length).toBe(1);
  return (await models.embed(f, faces))[0]!;
}
/** A member's own enrolment photo: one grid cell on its own. */
const enrolPhoto = async (row: number, col: number) =>
  sharp(await faceCell(row, col, 240))
    .jpeg()
    .toBuffer();

beforeAll(async () => {
  models = await loadFaceModels({ backend: 'wasm' });
}, 120_000);
afterAll(() => models?.dispose());

describe('face models (real inference, wasm)', () => {
  it('detects the known faces in a 640x480 scene where they were placed', async () => {
    const jpeg = await sceneWithFaces(640, 480, [
      { row: 0, col: 1, x: 80, y: 100, size: 160 },
      { row: 3, col: 4, x: 400, y: 220, size: 150 },
    ]);
    const faces = await models.detect(await rgb(jpeg), DETECT);
    expect(faces).toHaveLength(2);
    const centres = faces.map((f) => [f.x + f.w / 2, f.y + f.h / 2]).sort((a, b) => a[0]! - b[0]!);
    // each detection's centre lies inside the pasted face square
    expect(centres[0]![0]).toBeGreaterThan(80);
    expect(centres[0]![0]).toBeLessThan(240);
    expect(centres[1]![0]).toBeGreaterThan(400);
    expect(centres[1]![1]).toBeGreaterThan(220);
  });

  it('finds no face in a face-free image', async () => {
    for (const seed of [1, 2, 3]) {
      expect(await models.detect(await rgb(await emptyScene(640, 480, seed)), DETECT)).toHaveLength(0);
    }
  });

  it('refuses a corrupt JPEG with a reason (decoder stage)', async () => {
    const good = await emptyScene(320, 240);
    await expect(decodeFrame(corruptJpeg(good), { maxWidth: 640, maxHeight: 480 })).rejects.toMatchObject({
      reason: 'corrupt',
    });
    await expect(
      decodeFrame(Buffer.from('not a jpeg'), { maxWidth: 640, maxHeight: 480 }),
    ).rejects.toMatchObject({
      reason: 'format',
    });
    const tiny = await sharp({ create: { width: 16, height: 16, channels: 3, background: '#888' } })
      .jpeg()
      .toBuffer();
    await expect(decodeFrame(tiny, { maxWidth: 640, maxHeight: 480 })).rejects.toMatchObject({
      reason: 'size',
    });
  });

  it('another photo of the same man is closer than any photo of other people', async () => {
    const a0 = await embedOf(await enrolPhoto(0, 0));
    const a1 = await embedOf(await enrolPhoto(0, 1));
    const others = await Promise.all(
      [
        [3, 4],
        [4, 2],
        [5, 7],
      ].map(([r, c]) => enrolPhoto(r!, c!).then(embedOf)),
    );
    const same = vision.similarity(a0, a1);
    for (const o of others) expect(vision.similarity(a0, o)).toBeLessThan(same);
  });
});

describe('FaceRes graph rewrite [VISION-RUNTIME-3]', () => {
  it('rewrites all 27 ReLU6 chains and leaves the descriptor unchanged', async () => {
    expect(models.relu6Fused).toBe(27);
    const asExported = await loadFaceModels({ backend: 'wasm', fuseRelu6: false });
    try {
      expect(asExported.relu6Fused).toBe(0);
      for (const [r, c] of [
        [0, 0],
        [4, 2],
      ] as const) {
        const f = await rgb(await enrolPhoto(r, c));
        const faces = await models.detect(f, DETECT);
        const [a] = await models.embed(f, faces);
        const [b] = await asExported.embed(f, faces);
        expect(vision.similarity(a!, b!)).toBeGreaterThan(0.99999);
      }
    } finally {
      asExported.dispose();
    }
  });

  it('rewrites only chains whose constants are 6 and 0 and whose middle ops have one consumer', () => {
    const chain = (p: string, six: string, zero: string): vision.GraphNode[] => [
      { name: `${p}/relu`, op: 'Relu', input: [`${p}/x`] },
      { name: `${p}/min`, op: 'Minimum', input: [`${p}/relu`, six] },
      { name: `${p}/max`, op: 'Maximum', input: [`${p}/min`, zero], attr: { T: { type: 'DT_FLOAT' } } },
    ];
    const nodes = [
      ...chain('a', 'c6', 'c0'),
      ...chain('b', 'c5', 'c0'), // clips at 5: not a ReLU6
      ...chain('c', 'c6', 'c0'),
      { name: 'c/peek', op: 'Identity', input: ['c/min'] }, // the Minimum is read elsewhere
    ];
    const n = vision.fuseRelu6Chains(
      nodes,
      new Map([
        ['c6', 6],
        ['c5', 5],
        ['c0', 0],
      ]),
    );
    expect(n).toBe(1);
    expect(nodes.find((x) => x.name === 'a/max')).toMatchObject({ op: 'Relu6', input: ['a/x'] });
    expect(nodes.some((x) => x.name === 'a/min' || x.name === 'a/relu')).toBe(false);
    expect(nodes.filter((x) => x.op === 'Maximum')).toHaveLength(2);
  });

  it('reads float32 and float16 scalar weights at their offsets', () => {
    const buf = new ArrayBuffer(12 + 4 + 2 + 4);
    const v = new DataView(buf);
    v.setFloat32(12, 2.5, true); // after a 3-float vector
    v.setUint16(16, 0x4600, true); // float16 6.0
    v.setFloat32(18, -1, true);
    const m = vision.scalarWeights(
      [
        { name: 'vec', shape: [3], dtype: 'float32' },
        { name: 'a', shape: [], dtype: 'float32' },
        { name: 'six', shape: [], dtype: 'float32', quantization: { dtype: 'float16' } },
        { name: 'b', shape: [1], dtype: 'float32' },
      ],
      buf,
    );
    expect([...m]).toEqual([
      ['a', 2.5],
      ['six', 6],
      ['b', -1],
    ]);
  });
});

describe('sealed gallery entries', () => {
  it('round-trip within quantisation error and refuse another gateway or member id', () => {
    const v = vision.l2normalize(Float32Array.from({ length: 1024 }, (_, i) => Math.sin(i * 0.37)));
    const sealed = vision.sealEmbedding(KEY, GW, 'm-1', v);
    expect(vision.similarity(v, vision.openEmbedding(KEY, GW, 'm-1', sealed))).toBeGreaterThan(0.999);
    expect(() => vision.openEmbedding(KEY, 'gw-other', 'm-1', sealed)).toThrow();
    expect(() => vision.openEmbedding(KEY, GW, 'm-2', sealed)).toThrow();
    expect(() => vision.openEmbedding(Buffer.alloc(32, 8), GW, 'm-1', sealed)).toThrow();
  });

  it('stores entries sealed, reloads them, and a stale upsert cannot undo an erasure', async () => {
    const kv = new MemoryKv();
    const g = new Gallery(kv, GW, KEY);
    const v = vision.l2normalize(Float32Array.from({ length: 1024 }, (_, i) => Math.cos(i)));
    const sealed = vision.sealEmbedding(KEY, GW, 'm-1', v);
    await g.upsert({ version: 1, entries: [{ memberId: 'm-1', sealed }] });
    expect(await kv.get('vision/gallery/e/m-1')).toBe(sealed); // at rest: the sealed form only
    await g.remove({ version: 3, memberIds: ['m-1', 'm-9'], reason: 'erased' });
    const r = await g.upsert({ version: 2, entries: [{ memberId: 'm-1', sealed }] });
    expect(r.skipped).toEqual(['m-1']);
    const again = new Gallery(kv, GW, KEY);
    await again.load();
    expect(again.has('m-1')).toBe(false);
    expect(again.version).toBe(3);
  });

  it('refuses an upsert whose entry was sealed for another gateway, applying nothing', async () => {
    const g = new Gallery(new MemoryKv(), GW, KEY);
    const v = vision.l2normalize(new Float32Array(1024).fill(1));
    const good = vision.sealEmbedding(KEY, GW, 'm-1', v);
    const foreign = vision.sealEmbedding(KEY, 'gw-x', 'm-2', v);
    await expect(
      g.upsert({
        version: 1,
        entries: [
          { memberId: 'm-1', sealed: good },
          { memberId: 'm-2', sealed: foreign },
        ],
      }),
    ).rejects.toMatchObject({ code: 'EDGE_ERR_VISION_GALLERY' });
    expect(g.size).toBe(0);
  });
});

describe('gallery match [VISION-MATCH-1]', () => {
  it('the two-stage match of a large gallery finds the planted member and reports the exact similarity', () => {
    let seed = 42;
    const rand = () => {
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      return seed / 2 ** 32 - 0.5;
    };
    const base = vision.l2normalize(Float32Array.from({ length: 1024 }, rand));
    // 3000 members that all resemble one face (cosine ~0.6 with it), plus the target.
    const rows: Array<[string, Float32Array]> = Array.from({ length: 3000 }, (_, i) => [
      `m-${i}`,
      vision.l2normalize(Float32Array.from(base, (b) => b + rand() * 0.07)),
    ]);
    const target = vision.l2normalize(Float32Array.from({ length: 1024 }, rand));
    rows.push(['m-target', target]);
    const g = new Gallery(new MemoryKv(), GW, KEY);
    g.setRowsForBenchmark(rows);
    const probe = vision.l2normalize(Float32Array.from(target, (t) => t + rand() * 0.04));
    const fast = g.match(probe)!;
    const exact = g.matchExact(probe)!;
    expect(fast.memberId).toBe('m-target');
    expect(fast.similarity).toBe(exact.similarity);
    // `second` comes from the candidates only: never above the exact runner-up's
    expect(fast.second).toBeLessThanOrEqual(exact.second);
    // A probe resembling the whole crowd (nobody in particular): the coarse stage may pick
    // another near-equal member, but never one materially less similar than the exact best,
    // and such a match is ambiguous (tiny margin), which the service refuses anyway.
    const crowd = vision.l2normalize(Float32Array.from(base, (b) => b + rand() * 0.07));
    const c = g.match(crowd)!;
    const e = g.matchExact(crowd)!;
    expect(c.similarity).toBeGreaterThan(e.similarity - 0.03);
    expect(e.similarity - e.second).toBeLessThan(0.05);
  });
});

describe('SIMD match kernel [VISION-MATCH-2]', () => {
  let seed = 7;
  const rand = () => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 2 ** 32 - 0.5;
  };

  it('scores and dot equal the plain sums (float64 in JS) to float32 rounding', () => {
    const k = SimdDot.create();
    expect(k).not.toBeNull(); // Node 20 has WebAssembly SIMD
    const n = 37;
    const d = 68;
    const [Q, OUT, ROWS] = [0, 1024, 2048];
    k!.reserve(ROWS + n * d * 4 + 70_000); // crosses a page: views are re-made after growing
    const f = k!.floats;
    for (let j = 0; j < d; j++) f[Q / 4 + j] = rand();
    for (let i = 0; i < n * d; i++) f[ROWS / 4 + i] = rand();
    k!.scores(Q, ROWS, n, d * 4, OUT);
    for (let i = 0; i < n; i++) {
      let s = 0;
      for (let j = 0; j < d; j++) s += f[ROWS / 4 + i * d + j]! * f[Q / 4 + j]!;
      expect(k!.floats[OUT / 4 + i]).toBeCloseTo(s, 5);
      expect(k!.dot(Q, ROWS + i * d * 4, d * 4)).toBeCloseTo(s, 5);
    }
  });

  it('returns the same member and similarity as the JS loops, for exact and two-stage galleries', () => {
    const bases = Array.from({ length: 12 }, () =>
      vision.l2normalize(Float32Array.from({ length: 1024 }, rand)),
    );
    const faceLike = () => {
      const b = bases[Math.floor((rand() + 0.5) * bases.length)]!;
      return vision.l2normalize(Float32Array.from(b, (x) => x * 0.8 + rand() * 0.05));
    };
    for (const size of [40, 2000]) {
      const g = new Gallery(new MemoryKv(), GW, KEY);
      expect(g.simd).toBe(true);
      g.setRowsForBenchmark(Array.from({ length: size }, (_, i) => [`m-${i}`, faceLike()]));
      for (let q = 0; q < 25; q++) {
        const probe = faceLike();
        const a = g.match(probe)!;
        const b = g.matchWithoutSimd(probe)!;
        expect(a.memberId).toBe(b.memberId);
        expect(a.similarity).toBeCloseTo(b.similarity, 5);
      }
    }
  });

  it('keeps every row right when a removal rebuilds the rows in place', async () => {
    const g = new Gallery(new MemoryKv(), GW, KEY);
    const v = [1, 2, 3].map((k) =>
      vision.l2normalize(Float32Array.from({ length: 1024 }, (_, i) => Math.sin(i * k))),
    );
    await g.upsert({
      version: 1,
      entries: v.map((e, i) => ({ memberId: `m-${i}`, sealed: vision.sealEmbedding(KEY, GW, `m-${i}`, e) })),
    });
    await g.remove({ version: 2, memberIds: ['m-0'], reason: 'withdrawn' });
    expect(g.match(v[2]!)).toMatchObject({ memberId: 'm-2' });
    expect(g.match(v[2]!)!.similarity).toBeGreaterThan(0.99);
    expect(g.match(v[1]!)).toMatchObject({ memberId: 'm-1' });
  });
});

describe('tracking [VISION-PIPE-3]', () => {
  const face = (x: number): vision.FaceBox => ({ x, y: 100, w: 80, h: 80, score: 0.9, landmarks: [] });
  it('keeps a track across frames, backs off re-embedding, stops once identified, retires after lostMs', () => {
    const tr = new Tracker();
    const a = tr.update([face(100)], 0, 1500).assigned[0]!;
    expect(embedDue(a, 0, 1000)).toBe(true);
    a.embeds = 1;
    a.lastEmbedAt = 0;
    expect(tr.update([face(104)], 900, 1500).assigned[0]!.id).toBe(a.id); // moved a little: same track
    expect(embedDue(a, 900, 1000)).toBe(false);
    expect(embedDue(a, 1000, 1000)).toBe(true);
    a.embeds = 4; // after 1, 2, 4 s: now every 8 s at most
    a.lastEmbedAt = 7000;
    expect(embedDue(a, 14_000, 1000)).toBe(false);
    expect(embedDue(a, 15_000, 1000)).toBe(true);
    tr.settle(a.id);
    expect(embedDue(a, 60_000, 1000)).toBe(false);
    const later = tr.update([face(100)], 20_000, 1500);
    expect(later.departed.map((t) => t.id)).toEqual([a.id]);
    expect(later.assigned[0]!.id).not.toBe(a.id); // a new face at the same spot is a new track
    expect(later.departed[0]!.lastSeen - later.departed[0]!.firstSeen).toBe(900); // dwell
  });
});

describe('zones', () => {
  it('a face outside every zone is not identified; no zones = whole frame', () => {
    const zones = [{ id: 'shelf-a', x: 0, y: 0, w: 0.5, h: 1 }];
    expect(zoneOf(zones, { x: 10, y: 10, w: 50, h: 50 }, 640, 480)).toBe('shelf-a');
    expect(zoneOf(zones, { x: 500, y: 10, w: 50, h: 50 }, 640, 480)).toBeNull();
    expect(zoneOf(undefined, { x: 500, y: 10, w: 50, h: 50 }, 640, 480)).toBe('');
  });
});

describe('VisionService (worker thread, real models)', () => {
  let dir: string;
  let service: VisionService;
  let gallery: Gallery;
  // Each frame 5 s after the previous: every frame starts new tracks (lostMs 1500), so each is embedded.
  let clock = 1_700_000_000_000;
  let step = 5000;
  const tick = () => {
    clock += step;
    return clock;
  };
  const emitted: Array<{ camera: string; type: string; payload: Record<string, unknown> }> = [];
  const logs: string[] = [];
  const config = (over: Partial<VisionConfig> = {}): VisionConfig => ({
    cameras: [{ id: 'cam-1', recognition: true }],
    recognition: { enabled: true, threshold: 0.6, margin: 0.02, cooldownMs: 0 },
    maxWidth: 640,
    maxHeight: 480,
    minScore: 0.6,
    minFacePx: 40,
    maxFaces: 8,
    reembedMs: 0,
    lostMs: 1500,
    occupancyEveryMs: 60_000,
    backend: 'wasm',
    ...over,
  });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vision-'));
    gallery = new Gallery(new MemoryKv(), GW, KEY);
    // Enrol the man of row 0 from his own photo (cell 0); the camera will see another photo (cell 1).
    const e = await embedOf(await enrolPhoto(0, 0));
    // A second member (another person) keeps the gallery non-empty after alice's erasure,
    // so frames are still embedded and matched then (an empty gallery embeds nothing).
    const other = await embedOf(await enrolPhoto(5, 7));
    await gallery.upsert({
      version: 1,
      entries: [
        { memberId: 'm-alice', sealed: vision.sealEmbedding(KEY, GW, 'm-alice', e) },
        { memberId: 'm-other', sealed: vision.sealEmbedding(KEY, GW, 'm-other', other) },
      ],
    });
    const logger = pino({ level: 'warn' }, { write: (s: string) => logs.push(s) });
    service = new VisionService({
      // Two workers taking frames in turn [VISION-PIPE-4].
      config: config({ workers: 2 }),
      restartMinMs: 200,
      gallery,
      now: tick,
      logger,
      registry: new Registry(),
      emit: async (camera, type, payload) => {
        emitted.push({ camera, type, payload: payload as Record<string, unknown> });
      },
    });
    await service.start();
  }, 120_000);
  afterAll(async () => {
    await service?.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('recognises the enrolled member in another photo, not a stranger; corrupt frames are refused and the pipeline continues; erasure stops recognition', async () => {
    const enrolled = await sceneWithFaces(640, 480, [{ row: 0, col: 1, x: 200, y: 120, size: 180 }]);
    const stranger = await sceneWithFaces(640, 480, [{ row: 4, col: 2, x: 200, y: 120, size: 180 }], 2);

    expect(service.status().workers).toBe(2);
    service.frame('cam-1', corruptJpeg(enrolled));
    await service.idle();
    expect(service.status().frames.refused).toBe(1);
    expect(logs.join('')).toContain('EDGE_ERR_VISION_FRAME');

    service.frame('cam-1', enrolled);
    await service.idle();
    const rec = emitted.filter((e) => e.type === 'member.recognized');
    expect(rec).toHaveLength(1);
    expect(rec[0]!.payload).toMatchObject({ memberId: 'm-alice', camera: 'cam-1', galleryVersion: 1 });
    expect(Object.keys(rec[0]!.payload).sort()).toEqual([
      'camera',
      'galleryVersion',
      'id',
      'memberId',
      'similarity',
      'ts',
    ]);

    const before = service.status().frames.embedded;
    service.frame('cam-1', stranger);
    await service.idle();
    expect(service.status().frames.embedded).toBe(before + 1);
    expect(emitted.filter((e) => e.type === 'member.recognized')).toHaveLength(1);

    await gallery.remove({ version: 2, memberIds: ['m-alice'], reason: 'erased' });
    const embedded = service.status().frames.embedded;
    service.frame('cam-1', enrolled);
    await service.idle();
    expect(service.status().frames.embedded).toBe(embedded + 1); // the face was embedded and matched: no member
    expect(emitted.filter((e) => e.type === 'member.recognized')).toHaveLength(1);
    expect(service.status().frames.processed).toBe(3);
  }, 60_000);

  it("two workers: a camera's results and events keep its frame order, whichever worker finishes first [VISION-PIPE-4]", async () => {
    // A heavy frame (alice + 3 strangers to embed) followed by a light one (alice alone):
    // the light one, in the other worker, is usually done first.
    const heavy = await sceneWithFaces(640, 480, [
      { row: 0, col: 1, x: 20, y: 60, size: 140 },
      { row: 3, col: 4, x: 200, y: 60, size: 140 },
      { row: 4, col: 2, x: 380, y: 60, size: 140 },
      { row: 2, col: 6, x: 200, y: 280, size: 140 },
    ]);
    const light = await sceneWithFaces(640, 480, [{ row: 0, col: 1, x: 200, y: 120, size: 180 }]);
    await gallery.upsert({
      version: 3,
      entries: [
        {
          memberId: 'm-alice',
          sealed: vision.sealEmbedding(KEY, GW, 'm-alice', await embedOf(await enrolPhoto(0, 0))),
        },
      ],
    });
    const from = emitted.length;
    const before = service.status().frames;
    for (let round = 0; round < 3; round++) {
      // two frames go to the two workers at once, the third waits (at most one per camera)
      service.frame('cam-1', heavy);
      service.frame('cam-1', light);
      service.frame('cam-1', heavy);
      await service.idle();
    }
    const after = service.status().frames;
    expect(after.processed - before.processed).toBe(9);
    expect(after.dropped - before.dropped).toBe(0);
    const ts = emitted
      .slice(from)
      .filter((e) => e.type === 'member.recognized')
      .map((e) => e.payload.ts as number);
    expect(ts).toHaveLength(9); // alice in every frame (each frame 5 s after the last: new tracks)
    expect(ts).toEqual([...ts].sort((a, b) => a - b));
  }, 90_000);

  it('two workers share one track history per camera: an identified face staying in view is not embedded again', async () => {
    step = 100; // frames 100 ms apart: one track throughout
    try {
      const still = await sceneWithFaces(640, 480, [{ row: 0, col: 1, x: 200, y: 120, size: 180 }], 3);
      await gallery.upsert({
        version: 4,
        entries: [
          {
            memberId: 'm-alice',
            sealed: vision.sealEmbedding(KEY, GW, 'm-alice', await embedOf(await enrolPhoto(0, 0))),
          },
        ],
      });
      clock += 10_000; // the previous test's tracks have left
      const before = service.status().frames;
      // The first two frames are in the two workers at once: the second is embedded too
      // unless the first was identified before the second's detections reached the tracker.
      service.frame('cam-1', still);
      service.frame('cam-1', still);
      await service.idle();
      const first = service.status().frames.embedded - before.embedded;
      expect(first).toBeGreaterThanOrEqual(1);
      expect(first).toBeLessThanOrEqual(2);
      // Every later frame, whichever worker takes it, continues that identified track.
      for (let i = 0; i < 2; i++) {
        service.frame('cam-1', still);
        service.frame('cam-1', still);
        await service.idle();
      }
      const after = service.status().frames;
      expect(after.processed - before.processed).toBe(6);
      expect(after.embedded - before.embedded).toBe(first);
      expect(service.status().cameras['cam-1']!.persons).toBe(1);
    } finally {
      step = 5000;
    }
  }, 60_000);

  it('drops stale frames under a burst and never queues more than one per camera', async () => {
    const frame = await emptyScene(640, 480, 5);
    const before = service.status().frames;
    for (let i = 0; i < 30; i++) service.frame('cam-1', frame);
    await waitFor(
      () =>
        service.status().frames.processed +
          service.status().frames.dropped -
          before.processed -
          before.dropped ===
        30,
      60_000,
      'every burst frame processed or dropped',
    );
    const after = service.status().frames;
    expect(after.dropped - before.dropped).toBeGreaterThanOrEqual(27);
    expect(after.processed - before.processed).toBeGreaterThanOrEqual(1);
  }, 90_000);

  it('debug capture writes frames only until its end time, and logs each one [VISION-PRIVACY-3]', async () => {
    let now = 1_000_000;
    const capLogs: string[] = [];
    const capture = new VisionService({
      // Two wasm threads: the threaded SIMD build through the Node shim [VISION-RUNTIME-2].
      config: config({ threads: 2, debugCapture: { dir: join(dir, 'capture'), until: now + 1000 } }),
      gallery,
      now: () => now,
      logger: pino({ level: 'warn' }, { write: (s: string) => capLogs.push(s) }),
      registry: new Registry(),
      emit: async () => undefined,
    });
    await capture.start();
    try {
      expect(capture.status().threads).toBe(2);
      const frame = await emptyScene(320, 240, 9);
      capture.frame('cam-1', frame);
      await capture.idle();
      now += 2000; // past `until`
      capture.frame('cam-1', frame);
      await capture.idle();
      const files = await waitFor(
        async () => {
          const f = await readdir(join(dir, 'capture')).catch(() => []);
          return f.length > 0 ? f : undefined;
        },
        10_000,
        'captured file',
      );
      expect(files).toEqual(['cam-1-1000000.jpg']);
      expect(capLogs.filter((l) => l.includes('vision debug capture'))).toHaveLength(1);
    } finally {
      await capture.close();
    }
  }, 60_000);

  it('a worker that dies takes no more frames; its frame is refused, the camera carries on, and the worker is replaced', async () => {
    const frame = await sceneWithFaces(640, 480, [{ row: 4, col: 2, x: 200, y: 120, size: 180 }], 4);
    const before = service.status().frames;
    service.frame('cam-1', frame);
    service.frame('cam-1', frame); // both workers busy now
    const slots = (service as unknown as { slots: Array<{ worker: { terminate(): Promise<number> } }> })
      .slots;
    await slots[1]!.worker.terminate();
    await service.idle();
    expect(service.status().workers).toBe(1);
    service.frame('cam-1', frame);
    await service.idle();
    const after = service.status().frames;
    expect(after.refused - before.refused).toBe(1);
    expect(after.processed - before.processed).toBe(2);
    expect(logs.join('')).toContain('a vision worker exited');
    // [VISION-PIPE-5] replaced after the backoff; both workers take frames again.
    await waitFor(() => (service.status().workers === 2 ? true : undefined), 30_000, 'the worker replaced');
    expect(logs.join('')).toContain('vision worker replaced');
    service.frame('cam-1', frame);
    service.frame('cam-1', frame); // the second goes to the other (replaced) worker, not stale
    await service.idle();
    expect(service.status().frames.processed - after.processed).toBe(2);
    expect(service.status().frames.dropped).toBe(after.dropped);
  }, 90_000);

  it('refuses frames from a device that is not a configured camera', () => {
    const before = service.status().frames.refused;
    service.frame('cam-unknown', Buffer.from([0xff, 0xd8]));
    expect(service.status().frames.refused).toBe(before + 1);
  });
});
