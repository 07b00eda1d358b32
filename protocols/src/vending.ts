import { type Static, Type } from '@sinclair/typebox';
import { Millis } from './envelope.ts';
import { registerCommandType } from './commands.ts';
import { registerEventType } from './events.ts';

/**
 * Vending capability on the wire (docs/vending.md). The cloud issues `vend.dispense` after
 * a verified payment; the edge agent runs it through its VMC driver (at most once per
 * `orderId` [VEND-ONCE-1]) and reports `vend.result` on the tx lane (never dropped) as
 * well as the `command.result` of the command. Names match edge/src/vending (slot,
 * priceCents, outcome, reason).
 */
export const OrderId = Type.String({ pattern: '^[A-Za-z0-9_-]{6,32}$' });

export const VendDispensePayload = Type.Object(
  {
    /** The payment's out_trade_no: the edge ledger key, so one payment dispenses once. */
    orderId: OrderId,
    slot: Type.Integer({ minimum: 0, maximum: 65535 }),
    priceCents: Type.Integer({ minimum: 0, maximum: 65535 }),
  },
  { additionalProperties: false },
);
export type VendDispense = Static<typeof VendDispensePayload>;

export const VEND_FAIL_REASONS = [
  'no_drop',
  'vend_failed',
  'vmc_reset',
  'denied',
  'cancelled',
  'timeout',
  'interrupted',
  'expired',
  'stopped',
] as const;
export type VendFailReasonWire = (typeof VEND_FAIL_REASONS)[number];

export const VendResultPayload = Type.Object(
  {
    orderId: OrderId,
    /** The `vend.dispense` command this answers, when it came from one. */
    commandId: Type.Optional(Type.String({ maxLength: 64 })),
    outcome: Type.Union([Type.Literal('dispensed'), Type.Literal('failed')]),
    reason: Type.Optional(Type.Union(VEND_FAIL_REASONS.map((r) => Type.Literal(r)))),
    code: Type.Optional(Type.String({ maxLength: 64 })),
    slot: Type.Integer({ minimum: 0, maximum: 65535 }),
    durationMs: Type.Optional(Type.Integer({ minimum: 0 })),
    /** edge/src/vending VendOutcome fields, so the driver's outcome can be sent as is. */
    approvedAfterMs: Type.Optional(Type.Integer({ minimum: 0 })),
    dropSeen: Type.Optional(Type.Boolean()),
    at: Type.Optional(Millis),
  },
  { additionalProperties: false },
);
export type VendResult = Static<typeof VendResultPayload>;

/** The VMC's own reports (edge/src/vending VmcTelemetry), one event type, `kind` tells which. */
export const VendTelemetryPayload = Type.Union([
  Type.Object(
    { kind: Type.Literal('temperature'), deciCelsius: Type.Integer() },
    { additionalProperties: false },
  ),
  Type.Object(
    { kind: Type.Literal('stock'), slot: Type.Integer({ minimum: 0 }), count: Type.Integer({ minimum: 0 }) },
    { additionalProperties: false },
  ),
  Type.Object({ kind: Type.Literal('door'), open: Type.Boolean() }, { additionalProperties: false }),
  Type.Object(
    {
      kind: Type.Literal('event'),
      code: Type.String({ pattern: '^[A-Z0-9]{2,8}$' }),
      active: Type.Boolean(),
      orderId: Type.Optional(OrderId),
    },
    { additionalProperties: false },
  ),
]);
export type VendTelemetry = Static<typeof VendTelemetryPayload>;

export const VEND_DISPENSE = 'vend.dispense';
export const VEND_RESULT = 'vend.result';
export const VEND_TELEMETRY = 'vend.telemetry';

registerCommandType(VEND_DISPENSE, {
  executor: 'gateway',
  payload: VendDispensePayload,
  description: 'dispense one paid item: the edge VMC driver runs it at most once per orderId',
});
registerEventType(VEND_RESULT, {
  lane: 'tx',
  source: 'edge',
  payload: VendResultPayload,
  description: 'outcome of a dispense: dispensed, or failed with a reason (the cloud refunds)',
});
registerEventType(VEND_TELEMETRY, {
  lane: 'telemetry',
  source: 'edge',
  payload: VendTelemetryPayload,
  description: 'vending machine controller reports: temperature, stock per slot, door, EVA-DTS events',
});

/**
 * Machine alarms that must not expire with telemetry (edge VmcDriver): the door, EVA-DTS
 * event codes (EJL failed to drop, ELA failed vend, EGS door open, EA7 power outage) and the
 * serial link to the controller going down/up. Same shapes as the `door`/`event` kinds of
 * `vend.telemetry`, in the event lane.
 */
export const VendAlarmPayload = Type.Union([
  Type.Object({ kind: Type.Literal('door'), open: Type.Boolean() }, { additionalProperties: false }),
  Type.Object(
    {
      kind: Type.Literal('event'),
      code: Type.String({ pattern: '^[A-Z0-9]{2,8}$' }),
      active: Type.Boolean(),
      orderId: Type.Optional(OrderId),
    },
    { additionalProperties: false },
  ),
  Type.Object(
    {
      kind: Type.Literal('link'),
      up: Type.Boolean(),
      reason: Type.Optional(Type.String({ maxLength: 256 })),
    },
    { additionalProperties: false },
  ),
]);
export type VendAlarm = Static<typeof VendAlarmPayload>;
export const VEND_ALARM = 'vend.alarm';
registerEventType(VEND_ALARM, {
  lane: 'event',
  source: 'edge',
  payload: VendAlarmPayload,
  description: 'vending machine alarms: door, EVA-DTS event codes, controller link down/up',
});
