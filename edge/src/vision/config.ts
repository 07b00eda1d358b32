import { type Static, Type } from '@sinclair/typebox';

const Frac = Type.Number({ minimum: 0, maximum: 1 });

/** A recognition zone: a rectangle in fractions of the frame; faces whose centre is outside every zone are not identified. */
const ZoneSchema = Type.Object(
  { id: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }), x: Frac, y: Frac, w: Frac, h: Frac },
  { additionalProperties: false },
);

const CameraSchema = Type.Object(
  {
    /** The camera's device id (it must be in `devices`); frames arrive on dev/{id}/evt/vision.frame. */
    id: Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' }),
    /** Identify members on this camera (needs recognition.enabled too). Counting always runs. */
    recognition: Type.Boolean({ default: false }),
    /** Absent or empty = the whole frame. */
    zones: Type.Optional(Type.Array(ZoneSchema, { maxItems: 16 })),
  },
  { additionalProperties: false },
);

/** `vision` section of the edge config (docs/vision.md); absent = no vision pipeline at all. */
export const VisionConfigSchema = Type.Object(
  {
    cameras: Type.Array(CameraSchema, { maxItems: 32, default: [] }),
    recognition: Type.Object(
      {
        /** [VISION-CONSENT-1] off unless the site turns it on. */
        enabled: Type.Boolean({ default: false }),
        /** Cosine similarity needed to identify (docs/vision.md "Thresholds"). */
        threshold: Type.Number({ minimum: 0, maximum: 1, default: 0.7 }),
        /** Best must beat the runner-up by this much, or the match is ambiguous and dropped. */
        margin: Type.Number({ minimum: 0, maximum: 1, default: 0.05 }),
        /** The same member on the same camera is reported at most once per this period. */
        cooldownMs: Type.Integer({ minimum: 0, default: 60_000 }),
      },
      { additionalProperties: false, default: {} },
    ),
    /** 32-byte gallery key, base64 (issued by the cloud per gateway). */
    galleryKey: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9+/]{43}=$' })),
    galleryKeyFile: Type.Optional(Type.String({ minLength: 1 })),
    maxWidth: Type.Integer({ minimum: 64, maximum: 4096, default: 640 }),
    maxHeight: Type.Integer({ minimum: 64, maximum: 4096, default: 480 }),
    minScore: Type.Number({ minimum: 0.05, maximum: 0.99, default: 0.6 }),
    minFacePx: Type.Integer({ minimum: 8, maximum: 1024, default: 40 }),
    maxFaces: Type.Integer({ minimum: 1, maximum: 32, default: 8 }),
    reembedMs: Type.Integer({ minimum: 0, default: 1000 }),
    lostMs: Type.Integer({ minimum: 100, default: 1500 }),
    occupancyEveryMs: Type.Integer({ minimum: 1000, default: 30_000 }),
    /**
     * Threads the wasm backend computes each frame with [VISION-RUNTIME-2] (its threaded
     * SIMD build, XNNPACK pool). 1 = single-threaded build. More than the cores left free
     * by the rest of the gateway makes frames slower, not faster (threads wait for each other).
     * Absent = 1.
     */
    threads: Type.Optional(Type.Integer({ minimum: 1, maximum: 8 })),
    /**
     * Inference workers taking frames in turn [VISION-PIPE-4], each with its own models
     * (~100 MB more RSS each). Absent = 1. On a 2-core gateway 2 workers of 1 thread keep
     * both cores busy; `workers × threads` above the cores only adds waiting.
     */
    workers: Type.Optional(Type.Integer({ minimum: 1, maximum: 8 })),
    /** `wasm` forces the wasm backend even where @tensorflow/tfjs-node is installed. */
    backend: Type.Optional(Type.Union([Type.Literal('wasm'), Type.Literal('tensorflow')])),
    /**
     * [VISION-PRIVACY-3] explicit, time-limited debug capture: frames are written to
     * `dir` only until `until` (epoch ms, at most 1 h after start), each one logged.
     */
    debugCapture: Type.Optional(
      Type.Object(
        { dir: Type.String({ minLength: 1 }), until: Type.Integer({ minimum: 0 }) },
        { additionalProperties: false },
      ),
    ),
  },
  { additionalProperties: false },
);
export type VisionConfig = Static<typeof VisionConfigSchema>;
