import { type Static, Type } from '@sinclair/typebox';
import { registerCommandType } from './commands.ts';
import { Millis } from './envelope.ts';
import { registerEventType } from './events.ts';

/**
 * Unmanned cabinets and weight shelves on the wire (docs/cabinet.md). The cloud
 * authorises a member's scan and sends a signed, run-once `cabinet.unlock`; the edge
 * opens the lock relay, follows the door switch, and when the door closes diffs the
 * closing inventory (RFID and/or weight lanes) against the opening one. Session events
 * travel on the `tx` lane (never dropped); the cloud charges each session at most once,
 * keyed by `sessionId` [CAB-CHARGE-1]. Weight lanes report `shelf.take`/`shelf.return`
 * in the event lane.
 */
export const SessionId = Type.String({ pattern: '^[A-Za-z0-9_-]{6,40}$' });
const Sku = Type.String({ minLength: 1, maxLength: 64 });
const LaneRef = Type.String({ minLength: 1, maxLength: 64 });

export const CabinetUnlockPayload = Type.Object(
  {
    sessionId: SessionId,
    /** Who opened it (for the edge's log and the session events); never a payment credential. */
    memberId: Type.Optional(Type.String({ maxLength: 64 })),
    /** Door not opened within this → relock [CAB-DOOR-1]; default from the edge config. */
    openTimeoutMs: Type.Optional(Type.Integer({ minimum: 500, maximum: 120_000 })),
  },
  { additionalProperties: false },
);
export type CabinetUnlock = Static<typeof CabinetUnlockPayload>;

export const ItemCount = Type.Object({ sku: Sku, qty: Type.Integer({ minimum: 1, maximum: 10_000 }) });
export type ItemCountWire = Static<typeof ItemCount>;

/** Something the closing count could not attribute to a SKU: reported, never guessed [WEIGHT-AMBIG-1]. */
export const UnresolvedItem = Type.Object(
  {
    key: Type.String({ maxLength: 128 }),
    reason: Type.Union([Type.Literal('ambiguous'), Type.Literal('unknown'), Type.Literal('foreign')]),
    candidates: Type.Optional(Type.Array(Sku, { maxItems: 16 })),
    deltaGrams: Type.Optional(Type.Number()),
  },
  { additionalProperties: false },
);

const SessionBase = {
  sessionId: SessionId,
  at: Millis,
};

export const CabinetSessionUnlockedPayload = Type.Object(
  {
    ...SessionBase,
    memberId: Type.Optional(Type.String({ maxLength: 64 })),
    items: Type.Integer({ minimum: 0 }),
  },
  { additionalProperties: false },
);
export const CabinetSessionOpenedPayload = Type.Object(
  { ...SessionBase, resumed: Type.Optional(Type.Boolean()) },
  { additionalProperties: false },
);
export const CabinetSessionRelockedPayload = Type.Object(
  { ...SessionBase, reason: Type.Union([Type.Literal('not_opened'), Type.Literal('refused')]) },
  { additionalProperties: false },
);
export const CabinetSessionAlarmPayload = Type.Object(
  {
    ...SessionBase,
    kind: Type.Union([Type.Literal('door_held_open'), Type.Literal('door_forced')]),
    active: Type.Boolean(),
    openMs: Type.Optional(Type.Integer({ minimum: 0 })),
  },
  { additionalProperties: false },
);
export const CabinetSessionClosedPayload = Type.Object(
  {
    ...SessionBase,
    openedAt: Type.Optional(Millis),
    /** What left the cabinet: the cloud charges exactly these [CAB-DIFF-1]. */
    taken: Type.Array(ItemCount, { maxItems: 256 }),
    /** Items that came back beyond what was there at opening (not charged, not credited). */
    returned: Type.Array(ItemCount, { maxItems: 256 }),
    unresolved: Type.Array(UnresolvedItem, { maxItems: 256 }),
    /** Inventory sources used for the count. */
    sources: Type.Array(Type.Union([Type.Literal('rfid'), Type.Literal('weight'), Type.Literal('memory')])),
    /** True when the agent restarted during the session and resumed it from its ledger. */
    resumed: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);
export type CabinetSessionClosed = Static<typeof CabinetSessionClosedPayload>;

export const ShelfChangePayload = Type.Object(
  {
    shelf: Type.String({ minLength: 1, maxLength: 64 }),
    lane: LaneRef,
    at: Millis,
    /** Signed change of the stable weight (negative for a take). */
    deltaGrams: Type.Number(),
    /** The one SKU and count that explain the delta, when exactly one does. */
    sku: Type.Optional(Sku),
    count: Type.Optional(Type.Integer({ minimum: 1 })),
    /** More than one SKU/count explains the delta (equal unit weights): reported, not guessed [WEIGHT-AMBIG-1]. */
    ambiguous: Type.Optional(Type.Array(Type.Object({ sku: Sku, count: Type.Integer({ minimum: 1 }) }))),
    sessionId: Type.Optional(SessionId),
  },
  { additionalProperties: false },
);
export type ShelfChange = Static<typeof ShelfChangePayload>;

export const CABINET_UNLOCK = 'cabinet.unlock';
export const CABINET_SESSION_UNLOCKED = 'cabinet.session.unlocked';
export const CABINET_SESSION_OPENED = 'cabinet.session.opened';
export const CABINET_SESSION_RELOCKED = 'cabinet.session.relocked';
export const CABINET_SESSION_ALARM = 'cabinet.session.alarm';
export const CABINET_SESSION_CLOSED = 'cabinet.session.closed';
export const SHELF_TAKE = 'shelf.take';
export const SHELF_RETURN = 'shelf.return';

registerCommandType(CABINET_UNLOCK, {
  executor: 'gateway',
  payload: CabinetUnlockPayload,
  description: 'open the cabinet lock for one authorised session; runs once per session id',
});
registerEventType(CABINET_SESSION_UNLOCKED, {
  lane: 'tx',
  source: 'edge',
  payload: CabinetSessionUnlockedPayload,
  description: 'the lock relay opened for a session (opening inventory taken)',
});
registerEventType(CABINET_SESSION_OPENED, {
  lane: 'tx',
  source: 'edge',
  payload: CabinetSessionOpenedPayload,
  description: 'the door of an unlocked cabinet opened',
});
registerEventType(CABINET_SESSION_RELOCKED, {
  lane: 'tx',
  source: 'edge',
  payload: CabinetSessionRelockedPayload,
  description: 'the door was not opened in time: relocked, the session ends with nothing to charge',
});
registerEventType(CABINET_SESSION_ALARM, {
  lane: 'tx',
  source: 'edge',
  payload: CabinetSessionAlarmPayload,
  description: 'cabinet door held open too long, or opened without a session; raised and cleared',
});
registerEventType(CABINET_SESSION_CLOSED, {
  lane: 'tx',
  source: 'edge',
  payload: CabinetSessionClosedPayload,
  description: 'door closed and locked: what was taken (charged once per session), returned, unresolved',
});
registerEventType(SHELF_TAKE, {
  lane: 'event',
  source: 'edge',
  payload: ShelfChangePayload,
  description: 'a weight lane lost a stable amount of weight: likely SKU and count, or ambiguous',
});
registerEventType(SHELF_RETURN, {
  lane: 'event',
  source: 'edge',
  payload: ShelfChangePayload,
  description: 'a weight lane gained a stable amount of weight: likely SKU and count, or ambiguous',
});
