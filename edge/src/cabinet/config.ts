import { Type } from '@sinclair/typebox';

/**
 * The edge config's `cabinet` section (docs/cabinet.md): lock relay and door switch GPIO
 * lines, the session timings, and the inventory sources (RFID tag map, weight shelves
 * with their planogram, or `memory` for tests and demos).
 */
const GpioLine = Type.Object(
  {
    pin: Type.Integer({ minimum: 0, maximum: 4095 }),
    base: Type.Optional(Type.Integer({ minimum: 0, maximum: 4095 })),
    activeLow: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

const WeightLaneSchema = Type.Object(
  {
    id: Type.String({ minLength: 1, maxLength: 64 }),
    gramsPerCount: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    tareCounts: Type.Optional(Type.Number()),
    thresholdG: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    stableTolG: Type.Optional(Type.Number({ exclusiveMinimum: 0 })),
    window: Type.Optional(Type.Integer({ minimum: 1, maximum: 101 })),
    stableSamples: Type.Optional(Type.Integer({ minimum: 1, maximum: 100 })),
    skus: Type.Array(
      Type.Object(
        {
          sku: Type.String({ minLength: 1, maxLength: 64 }),
          unitGrams: Type.Number({ exclusiveMinimum: 0 }),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 32 },
    ),
  },
  { additionalProperties: false },
);

export const CabinetConfigSchema = Type.Object(
  {
    /** Lock relay output (1 = unlocked). Required: a cabinet without a lock cannot be sold from. */
    lockGpio: GpioLine,
    /** Door switch input (1 = open). */
    doorGpio: GpioLine,
    doorDebounceMs: Type.Integer({ minimum: 0, maximum: 10_000, default: 30 }),
    /** [CAB-DOOR-1] door not opened within this → relock. */
    openTimeoutMs: Type.Integer({ minimum: 500, maximum: 120_000, default: 5_000 }),
    /** [CAB-DOOR-2] door open longer than this → alarm. */
    alarmAfterMs: Type.Integer({ minimum: 1_000, maximum: 3_600_000, default: 60_000 }),
    /** In-memory inventory (tests, demos): the agent exposes it to be filled. */
    memoryInventory: Type.Boolean({ default: false }),
    /** RFID: EPC → SKU map; rounds per snapshot [CAB-INV-1] and extra rounds for missing tags [CAB-INV-2]. */
    rfid: Type.Optional(
      Type.Object(
        {
          tags: Type.Record(Type.String({ pattern: '^[0-9A-Fa-f]{4,64}$' }), Type.String({ maxLength: 64 }), {
            maxProperties: 10_000,
          }),
          rounds: Type.Integer({ minimum: 1, maximum: 20, default: 3 }),
          extraRounds: Type.Integer({ minimum: 0, maximum: 50, default: 6 }),
        },
        { additionalProperties: false },
      ),
    ),
    /** Weight shelves: readings arrive as `shelf.reading` device events of the shelf device id. */
    shelves: Type.Optional(
      Type.Array(
        Type.Object(
          {
            id: Type.String({ minLength: 1, maxLength: 64 }),
            lanes: Type.Array(WeightLaneSchema, { minItems: 1, maxItems: 64 }),
          },
          { additionalProperties: false },
        ),
        { maxItems: 16 },
      ),
    ),
    /** How long the closing count waits for the weight lanes to settle. */
    weightSettleMs: Type.Integer({ minimum: 0, maximum: 60_000, default: 3_000 }),
  },
  { additionalProperties: false },
);
