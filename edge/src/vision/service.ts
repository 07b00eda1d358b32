import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { MEMBER_RECOGNIZED, type MemberRecognized, newId, vision } from '@storelink/protocols';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { edgeError } from '../errors.ts';
import type { VisionConfig } from './config.ts';
import { embedDue, type FaceResult, type FrameResult, type Track, Tracker } from './frames.ts';
import type { Gallery } from './gallery.ts';
import type { EmbedRequest, FrameRequest, WorkerInit, WorkerReply } from './worker.ts';

/**
 * On-device vision (docs/vision.md). Frames in, `member.recognized` and
 * `vision.occupancy` out — never an image, never an embedding [VISION-PRIVACY-1].
 *
 * Inference runs in worker threads so the broker, the uplink and HTTP keep their
 * event loop [VISION-PIPE-1]. Backpressure [VISION-PIPE-2]: one frame in each worker,
 * at most one waiting per camera; a newer frame replaces the waiting one (counted as a
 * stale drop). Nothing queues without bound. With several workers [VISION-PIPE-4] they
 * take frames in turn — also frames of one camera — while tracking and results stay in
 * the camera's frame order.
 */

/** Publishes a device event under the camera's id through the agent's normal ingest. */
export type VisionEmit = (camera: string, type: string, payload: object) => Promise<void>;

export interface VisionServiceOptions {
  config: VisionConfig;
  gallery: Gallery;
  emit: VisionEmit;
  now: () => number;
  logger: Logger;
  registry: Registry;
  /** Worker entry (default: worker-boot.mjs next to this file). */
  workerUrl?: URL;
  /** First delay before a worker that exited is replaced (doubling to 30 s); default 1000 ms. */
  restartMinMs?: number;
}

const RESTART_MAX_MS = 30_000;

interface Waiting {
  camera: string;
  jpeg: Buffer;
  at: number;
}

export interface VisionStatus {
  backend: string | null;
  /** Inference workers taking frames in turn [VISION-PIPE-4]. */
  workers: number;
  /** Threads the backend computes with (wasm: its XNNPACK pool). */
  threads: number;
  ready: boolean;
  recognition: boolean;
  galleryVersion: number;
  gallerySize: number;
  /** processed/dropped/refused frames; embedded = faces embedded (identification attempts). */
  frames: { processed: number; dropped: number; refused: number; embedded: number };
  cameras: Record<string, { persons: number }>;
}

/** One inference worker; it takes one frame at a time, through both steps. */
interface Slot {
  worker: Worker;
  seq: number | null;
}

/** A frame between its arrival in a worker and its result being handled, in camera order. */
interface InFlight {
  seq: number;
  camera: string;
  at: number;
  started: number;
  embed: boolean;
  slot: Slot;
  detected?: Extract<WorkerReply, { kind: 'detected' }>;
  /** Set once the tracker took the detections: which tracks went to embedding. */
  tracked?: { faces: Array<{ track: Track; box: FaceResult['box'] }>; toEmbed: number[]; departed: number[] };
  done?:
    | { ok: true; embeddings: Float32Array[]; ms: number }
    | { ok: false; reason: string; message: string };
}

export class VisionService {
  private readonly slots: Slot[] = [];
  private backend: string | null = null;
  private threads = 1;
  private ready = false;
  private seq = 0;
  private readonly waiting = new Map<string, Waiting>();
  private readonly order: string[] = [];
  private readonly inflight = new Map<number, InFlight>();
  /** Per camera: its frames in flight, oldest first, and its one track history [VISION-PIPE-4]. */
  private readonly lanes = new Map<string, { queue: InFlight[]; tracker: Tracker }>();
  private readonly cooldown = new Map<string, number>();
  private readonly persons = new Map<string, number>();
  private readonly dwell = new Map<string, number[]>();
  private readonly counts = { processed: 0, dropped: 0, refused: 0, embedded: 0 };
  private occTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private idleWaiters: Array<() => void> = [];
  private readonly m: ReturnType<typeof visionMetrics>;
  private readonly cameras: Map<string, VisionConfig['cameras'][number]>;

  constructor(private readonly o: VisionServiceOptions) {
    this.restartMinMs = o.restartMinMs ?? 1000;
    this.restartDelayMs = this.restartMinMs;
    this.m = visionMetrics(o.registry, () => o.gallery);
    this.cameras = new Map(o.config.cameras.map((c) => [c.id, c]));
  }

  private workerUrl: URL | undefined;
  private workerInit: WorkerInit | undefined;
  private readonly restartMinMs: number;
  private restartDelayMs: number;
  private readonly restartTimers = new Set<NodeJS.Timeout>();

  async start(): Promise<void> {
    const c = this.o.config;
    const init: WorkerInit = {
      ...(c.backend ? { backend: c.backend } : {}),
      ...(c.threads && c.threads > 1 ? { threads: c.threads } : {}),
      pipeline: {
        maxWidth: c.maxWidth,
        maxHeight: c.maxHeight,
        detect: { minScore: c.minScore, iou: 0.3, maxFaces: c.maxFaces, minSizePx: c.minFacePx },
      },
    };
    this.workerUrl = this.o.workerUrl ?? new URL('./worker-boot.mjs', import.meta.url);
    this.workerInit = init;
    await Promise.all(Array.from({ length: c.workers ?? 1 }, () => this.startWorker()));
    this.ready = true;
    this.occTimer = setInterval(() => void this.flushOccupancy(), c.occupancyEveryMs);
    this.occTimer.unref();
    this.o.logger.info(
      {
        backend: this.backend,
        workers: this.slots.length,
        threads: this.threads,
        cameras: c.cameras.length,
        recognition: c.recognition.enabled,
      },
      'vision pipeline started',
    );
  }

  /** Starts one inference worker; it joins the pool once its models are loaded. */
  private async startWorker(): Promise<void> {
    const w = new Worker(this.workerUrl!, { workerData: this.workerInit });
    const slot: Slot = { worker: w, seq: null };
    await new Promise<void>((resolve, reject) => {
      w.once('exit', (code) =>
        reject(
          edgeError('EDGE_ERR_VISION_MODEL', {
            reason: `vision worker exited (${code}) before it was ready`,
          }),
        ),
      );
      w.on('message', (r: WorkerReply) => {
        if (r.kind === 'ready') {
          this.backend = r.backend;
          this.threads = r.threads;
          resolve();
        } else if (r.kind === 'fatal') reject(edgeError('EDGE_ERR_VISION_MODEL', { reason: r.message }));
        else if (r.kind === 'detected') this.onDetected(r);
        else this.onEmbedded(r);
      });
      w.once('error', (e) => reject(edgeError('EDGE_ERR_VISION_MODEL', { reason: e.message }, { cause: e })));
    });
    w.on('error', (e) => this.o.logger.error({ err: e.message }, 'vision worker failed'));
    w.on('exit', () => this.lose(slot));
    if (this.closed) {
      await w.terminate();
      return;
    }
    this.slots.push(slot);
  }

  /**
   * A worker that died takes no more frames; its frame in flight is refused, so the
   * camera's later results are not held behind it (nothing waits on a dead worker).
   */
  private lose(slot: Slot): void {
    const i = this.slots.indexOf(slot);
    if (i < 0 || this.closed) return;
    this.slots.splice(i, 1);
    const f = slot.seq === null ? undefined : this.inflight.get(slot.seq);
    slot.seq = null;
    if (f && !f.done) {
      f.done = { ok: false, reason: 'inference', message: 'the vision worker running this frame exited' };
      this.advance(f.camera);
    }
    this.o.logger.error(
      { workers: this.slots.length, restartInMs: this.restartDelayMs },
      'a vision worker exited; it takes no more frames and is replaced',
    );
    this.scheduleRestart();
    this.pump();
  }

  /**
   * [VISION-PIPE-5] a worker that exited is replaced after a backoff (1 s doubling to
   * 30 s, back to the minimum once a replacement is ready), so one crash does not leave
   * the camera with less capacity, or none, until the agent restarts.
   */
  private scheduleRestart(): void {
    const delay = this.restartDelayMs;
    this.restartDelayMs = Math.min(delay * 2, RESTART_MAX_MS);
    const t = setTimeout(() => {
      this.restartTimers.delete(t);
      if (this.closed) return;
      this.startWorker().then(
        () => {
          if (this.closed) return;
          this.restartDelayMs = this.restartMinMs;
          this.m.workerRestarts.inc();
          this.o.logger.warn({ workers: this.slots.length }, 'vision worker replaced');
          this.pump();
        },
        (err: Error) => {
          this.o.logger.error({ err: err.message }, 'replacing a vision worker failed; retrying');
          if (!this.closed) this.scheduleRestart();
        },
      );
    }, delay);
    t.unref();
    this.restartTimers.add(t);
  }

  /** A camera frame (raw JPEG) from `dev/{camera}/evt/vision.frame`. Never stored [VISION-PRIVACY-2]. */
  frame(camera: string, jpeg: Buffer): void {
    if (this.closed) return;
    if (!this.cameras.has(camera)) {
      this.reject(camera, 'camera', `device ${camera} is not a configured camera (vision.cameras)`);
      return;
    }
    const at = this.o.now();
    void this.debugCapture(camera, jpeg, at);
    if (this.waiting.has(camera)) {
      // [VISION-PIPE-2] the newer frame wins; the older one is stale.
      this.counts.dropped++;
      this.m.dropped.inc({ camera, reason: 'stale' });
    } else this.order.push(camera);
    this.waiting.set(camera, { camera, jpeg, at });
    this.pump();
  }

  status(): VisionStatus {
    return {
      backend: this.backend,
      workers: this.slots.length,
      threads: this.threads,
      ready: this.ready,
      recognition: this.o.config.recognition.enabled,
      galleryVersion: this.o.gallery.version,
      gallerySize: this.o.gallery.size,
      frames: { ...this.counts },
      cameras: Object.fromEntries(
        [...this.cameras.keys()].map((id) => [id, { persons: this.persons.get(id) ?? 0 }]),
      ),
    };
  }

  /** Resolves when no frame is in a worker or waiting (tests, shutdown). */
  idle(): Promise<void> {
    if (this.inflight.size === 0 && this.waiting.size === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  async close(): Promise<void> {
    this.closed = true;
    clearInterval(this.occTimer);
    for (const t of this.restartTimers) clearTimeout(t);
    this.restartTimers.clear();
    this.waiting.clear();
    this.order.length = 0;
    await Promise.all(this.slots.map((s) => s.worker.terminate()));
    this.inflight.clear();
    this.lanes.clear();
    for (const r of this.idleWaiters.splice(0)) r();
  }

  /** Hands waiting frames to free workers, cameras in arrival order. */
  private pump(): void {
    if (!this.ready || this.closed) return;
    for (const slot of this.slots) {
      if (slot.seq !== null) continue;
      const camera = this.order.shift();
      if (camera === undefined) break;
      const w = this.waiting.get(camera)!;
      this.waiting.delete(camera);
      const f: InFlight = {
        seq: ++this.seq,
        camera,
        at: w.at,
        started: performance.now(),
        // Embedding only where identification is lawful here [VISION-CONSENT-1].
        embed: this.recognitionOn(camera) && this.o.gallery.size > 0,
        slot,
      };
      slot.seq = f.seq;
      this.inflight.set(f.seq, f);
      this.lane(camera).queue.push(f);
      const req: FrameRequest = { kind: 'frame', seq: f.seq, jpeg: new Uint8Array(w.jpeg) };
      slot.worker.postMessage(req, [req.jpeg.buffer as ArrayBuffer]);
    }
    if (this.inflight.size === 0 && this.waiting.size === 0) for (const r of this.idleWaiters.splice(0)) r();
  }

  private lane(camera: string): { queue: InFlight[]; tracker: Tracker } {
    let l = this.lanes.get(camera);
    if (!l) {
      l = { queue: [], tracker: new Tracker() };
      this.lanes.set(camera, l);
    }
    return l;
  }

  private onDetected(r: Extract<WorkerReply, { kind: 'detected' }>): void {
    const f = this.inflight.get(r.seq);
    if (!f) return;
    f.detected = r;
    if (!r.ok) {
      // The worker dropped the frame: it is free, and the frame is done (refused).
      f.done = { ok: false, reason: r.reason, message: r.message };
      this.free(f);
    }
    this.advance(f.camera);
  }

  private onEmbedded(r: Extract<WorkerReply, { kind: 'embedded' }>): void {
    const f = this.inflight.get(r.seq);
    if (!f) return;
    f.done = r.ok
      ? { ok: true, embeddings: r.embeddings, ms: r.ms }
      : { ok: false, reason: r.reason, message: r.message };
    this.free(f);
    this.advance(f.camera);
  }

  private free(f: InFlight): void {
    f.slot.seq = null;
    queueMicrotask(() => this.pump());
  }

  /**
   * [VISION-PIPE-4] A camera's frames go through its tracker, and their results are handled,
   * strictly in arrival order, whichever worker finishes first: a later frame's detections
   * wait for the earlier frame's, and its events for the earlier frame's events.
   */
  private advance(camera: string): void {
    const lane = this.lanes.get(camera);
    if (!lane) return;
    for (const f of lane.queue) {
      if (!f.detected) {
        if (f.done) continue; // lost with its worker: nothing to track
        break;
      }
      if (f.tracked || !f.detected.ok) continue;
      this.track(f, lane.tracker, f.detected);
    }
    while (lane.queue.length > 0 && lane.queue[0]!.done) {
      const f = lane.queue.shift()!;
      this.inflight.delete(f.seq);
      this.finish(f);
    }
  }

  private track(
    f: InFlight,
    tracker: Tracker,
    d: Extract<WorkerReply, { kind: 'detected'; ok: true }>,
  ): void {
    const c = this.o.config;
    const { assigned, departed } = tracker.update(d.faces, f.at, c.lostMs);
    const due = f.embed ? assigned.filter((t) => embedDue(t, f.at, c.reembedMs)) : [];
    for (const t of due) {
      t.lastEmbedAt = f.at;
      t.embeds++;
    }
    f.tracked = {
      faces: assigned.map((t) => {
        const { x, y, w, h, score } = t.box;
        return { track: t, box: { x, y, w, h, score } };
      }),
      toEmbed: due.map((t) => t.id),
      departed: departed.map((t) => t.lastSeen - t.firstSeen),
    };
    this.persons.set(f.camera, tracker.size);
    const req: EmbedRequest = { kind: 'embed', seq: f.seq, faces: due.map((t) => t.box) };
    f.slot.worker.postMessage(req);
  }

  private finish(f: InFlight): void {
    const done = f.done!;
    if (!done.ok) {
      this.reject(f.camera, done.reason, done.message);
      return;
    }
    const d = f.detected as Extract<WorkerReply, { kind: 'detected'; ok: true }>;
    const t = f.tracked!;
    const byTrack = new Map(t.toEmbed.map((id, i) => [id, done.embeddings[i]!]));
    const result: FrameResult = {
      width: d.width,
      height: d.height,
      faces: t.faces.map(({ track, box }) => {
        const e = byTrack.get(track.id);
        return { track: track.id, box, ...(e ? { embedding: e } : {}) };
      }),
      persons: this.persons.get(f.camera) ?? 0,
      departedDwellMs: t.departed,
      ms: { decode: d.ms.decode, detect: d.ms.detect, embed: done.ms },
    };
    this.handleResult(f.camera, f.at, result, performance.now() - f.started);
  }

  private recognitionOn(camera: string): boolean {
    return this.o.config.recognition.enabled && (this.cameras.get(camera)?.recognition ?? false);
  }

  private reject(camera: string, reason: string, detail: string): void {
    this.counts.refused++;
    const e = edgeError('EDGE_ERR_VISION_FRAME', { camera, reason, detail });
    this.m.refused.inc({ reason });
    this.o.logger.warn({ code: e.code, camera, reason }, e.message);
  }

  private handleResult(camera: string, at: number, r: FrameResult, ms: number): void {
    this.counts.processed++;
    this.m.frames.inc({ camera });
    this.m.latency.observe({ stage: 'total' }, ms / 1000);
    this.m.latency.observe({ stage: 'detect' }, r.ms.detect / 1000);
    if (r.ms.embed > 0) this.m.latency.observe({ stage: 'embed' }, r.ms.embed / 1000);
    this.persons.set(camera, r.persons);
    if (r.departedDwellMs.length)
      this.dwell.set(camera, [...(this.dwell.get(camera) ?? []), ...r.departedDwellMs]);
    for (const face of r.faces) {
      if (!face.embedding) continue;
      this.counts.embedded++;
      this.identify(camera, at, face, r);
    }
  }

  private identify(camera: string, at: number, face: FaceResult, r: FrameResult): void {
    const rc = this.o.config.recognition;
    const cam = this.cameras.get(camera)!;
    if (!rc.enabled || !cam.recognition) return;
    const zone = zoneOf(cam.zones, face.box, r.width, r.height);
    if (zone === null) return; // outside every zone: counted, never identified
    const t0 = performance.now();
    const m = this.o.gallery.match(face.embedding!);
    this.m.matchSeconds.observe((performance.now() - t0) / 1000);
    if (!m || m.similarity < rc.threshold || m.similarity - m.second < rc.margin) return;
    // [VISION-PIPE-3] identified: this track is not embedded again while it stays in view.
    this.lanes.get(camera)?.tracker.settle(face.track);
    const key = `${camera}\u0000${m.memberId}`;
    if (at - (this.cooldown.get(key) ?? -Infinity) < rc.cooldownMs) return;
    this.cooldown.set(key, at);
    const payload: MemberRecognized = {
      id: newId(at),
      ts: at,
      memberId: m.memberId,
      similarity: Math.round(m.similarity * 1000) / 1000,
      camera,
      ...(zone ? { zone } : {}),
      galleryVersion: this.o.gallery.version,
    };
    this.m.recognized.inc({ camera });
    this.o.emit(camera, MEMBER_RECOGNIZED, payload).catch((e: unknown) => {
      this.o.logger.error({ err: (e as Error).message, camera }, 'member.recognized not stored');
    });
  }

  private async flushOccupancy(): Promise<void> {
    const every = this.o.config.occupancyEveryMs;
    for (const camera of this.cameras.keys()) {
      const dwell = this.dwell.get(camera) ?? [];
      this.dwell.delete(camera);
      const payload: vision.VisionOccupancy = {
        ts: this.o.now(),
        camera,
        persons: this.persons.get(camera) ?? 0,
        departed: dwell.length,
        meanDwellMs: dwell.length ? Math.round(dwell.reduce((a, b) => a + b, 0) / dwell.length) : 0,
        windowMs: every,
      };
      await this.o.emit(camera, vision.VISION_OCCUPANCY, payload).catch((e: unknown) => {
        this.o.logger.warn({ err: (e as Error).message, camera }, 'vision.occupancy not stored');
      });
    }
  }

  private async debugCapture(camera: string, jpeg: Buffer, at: number): Promise<void> {
    const d = this.o.config.debugCapture;
    if (!d || at >= d.until) return;
    // [VISION-PRIVACY-3] every captured frame is logged; capture ends at `until`.
    const file = join(d.dir, `${camera}-${at}.jpg`);
    this.o.logger.warn({ camera, file, until: d.until }, 'vision debug capture: frame written to disk');
    await mkdir(d.dir, { recursive: true });
    await writeFile(file, jpeg);
  }
}

/** The zone a face's centre falls in: its id, '' when no zones are configured, null when outside all. */
export function zoneOf(
  zones: VisionConfig['cameras'][number]['zones'],
  box: { x: number; y: number; w: number; h: number },
  width: number,
  height: number,
): string | null {
  if (!zones || zones.length === 0) return '';
  const cx = (box.x + box.w / 2) / width;
  const cy = (box.y + box.h / 2) / height;
  const z = zones.find((z) => cx >= z.x && cx <= z.x + z.w && cy >= z.y && cy <= z.y + z.h);
  return z ? z.id : null;
}

/** `storelink_edge_vision_*` on the agent's registry (scripts/ops-doc.ts may call it with no gallery). */
export function visionMetrics(registry: Registry, gallery: () => Gallery | undefined = () => undefined) {
  const registers = [registry];
  new Gauge({
    name: 'storelink_edge_vision_gallery_size',
    help: 'members in the on-device face gallery',
    registers,
    collect() {
      this.set(gallery()?.size ?? 0);
    },
  });
  new Gauge({
    name: 'storelink_edge_vision_gallery_version',
    help: 'gallery version last applied (also in the heartbeat)',
    registers,
    collect() {
      this.set(gallery()?.version ?? 0);
    },
  });
  return {
    frames: new Counter({
      name: 'storelink_edge_vision_frames_total',
      help: 'camera frames run through the vision pipeline',
      labelNames: ['camera'],
      registers,
    }),
    dropped: new Counter({
      name: 'storelink_edge_vision_frames_dropped_total',
      help: 'camera frames dropped because a newer frame arrived before inference was free',
      labelNames: ['camera', 'reason'],
      registers,
    }),
    refused: new Counter({
      name: 'storelink_edge_vision_frames_refused_total',
      help: 'camera frames refused (corrupt, wrong size, not a JPEG, unknown camera)',
      labelNames: ['reason'],
      registers,
    }),
    recognized: new Counter({
      name: 'storelink_edge_vision_recognized_total',
      help: 'member.recognized events emitted',
      labelNames: ['camera'],
      registers,
    }),
    latency: new Histogram({
      name: 'storelink_edge_vision_stage_seconds',
      help: 'vision pipeline time per frame by stage (total includes queueing in the worker)',
      labelNames: ['stage'],
      buckets: [0.01, 0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.6],
      registers,
    }),
    workerRestarts: new Counter({
      name: 'storelink_edge_vision_worker_restarts_total',
      help: 'inference workers replaced after one exited [VISION-PIPE-5]',
      registers,
    }),
    matchSeconds: new Histogram({
      name: 'storelink_edge_vision_match_seconds',
      help: 'gallery match time per face',
      buckets: [0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.05],
      registers,
    }),
  };
}
