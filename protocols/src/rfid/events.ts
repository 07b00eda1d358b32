import { type Static, Type } from '@sinclair/typebox';
import { Millis } from '../envelope.ts';
import { registerEventType } from '../events.ts';

/**
 * RFID events on the wire (docs/rfid.md). The edge RFID driver reports changes of its
 * smoothed presence view [RFID-SMOOTH-1] on the event lane, and reader/antenna faults.
 * `device` of the envelope is the gateway; `reader` names the reader in the gateway config.
 */
export const TAG_ARRIVED = 'tag.arrived';
export const TAG_DEPARTED = 'tag.departed';
export const RFID_ALARM = 'rfid.alarm';

const Epc = Type.String({ pattern: '^(?:[0-9a-f]{2}){1,62}$' });
const ReaderName = Type.String({ pattern: '^[A-Za-z0-9_.-]{1,64}$' });
const Antenna = Type.Integer({ minimum: 1, maximum: 8 });

export const TagArrivedPayload = Type.Object(
  {
    reader: ReaderName,
    epc: Epc,
    antenna: Antenna,
    /** Signal strength: dBm for R2000 readers, the raw strength byte for Chafon readers. */
    rssi: Type.Number(),
    at: Millis,
  },
  { additionalProperties: false },
);
export type TagArrivedEvent = Static<typeof TagArrivedPayload>;

export const TagDepartedPayload = Type.Object(
  {
    reader: ReaderName,
    epc: Epc,
    /** Antenna it was last read on. */
    antenna: Antenna,
    rssi: Type.Number(),
    lastSeen: Millis,
    at: Millis,
  },
  { additionalProperties: false },
);
export type TagDepartedEvent = Static<typeof TagDepartedPayload>;

export const RfidAlarmPayload = Type.Object(
  {
    reader: ReaderName,
    /** EDGE_ERR_RFID_* catalogue code. */
    code: Type.String({ pattern: '^[A-Z][A-Z0-9_]{1,63}$' }),
    antenna: Type.Optional(Antenna),
    active: Type.Boolean(),
    message: Type.Optional(Type.String({ maxLength: 512 })),
  },
  { additionalProperties: false },
);
export type RfidAlarm = Static<typeof RfidAlarmPayload>;

registerEventType(TAG_ARRIVED, {
  lane: 'event',
  source: 'edge',
  payload: TagArrivedPayload,
  description: 'an RFID tag entered a reader field (first read; smoothed presence)',
});
registerEventType(TAG_DEPARTED, {
  lane: 'event',
  source: 'edge',
  payload: TagDepartedPayload,
  description: 'an RFID tag left the field (missed for N rounds and T ms, not one missed read)',
});
registerEventType(RFID_ALARM, {
  lane: 'event',
  source: 'edge',
  payload: RfidAlarmPayload,
  description: 'RFID reader faults raised/cleared: antenna missing, timeouts, link down',
});
