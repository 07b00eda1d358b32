import { type Static, Type } from '@sinclair/typebox';
import { registerCommandType } from './commands.ts';
import { Id, Millis } from './envelope.ts';
import { registerEventType } from './events.ts';

/**
 * Electronic shelf labels on the wire (docs/esl.md), modelled on OpenEPaperLink (OEPL).
 *
 * cloud → edge  `esl.campaign` / `esl.cancel` (signed gateway commands): what each tag
 *               must show (content, not pixels: the edge renders).
 * edge  → AP    `dev/{ap}/cmd/esl.push` / `esl.cancel`: rendered raw images keyed by tag
 *               MAC with `dataVer` = first 8 bytes of the image MD5 (OEPL SDA> / CXD>).
 * AP    → edge  `dev/{ap}/evt/esl.checkin|esl.xfer_complete|esl.xfer_timeout|esl.push_nack`
 *               (OEPL ADR> / XFC> / XTO> / NOQ>), batched per AP.
 * edge  → cloud `esl.tag_state` (event lane): per tag and campaign, pushed / confirmed /
 *               failed / superseded / cancelled; `esl.tag_status` (telemetry), `esl.alert`.
 * display ↔ edge `dev/{display}/cmd/esl.show` and `dev/{display}/evt/esl.shown`: signage
 *               screens, same confirm-by-hash rule [ESL-CONFIRM-1].
 *
 * [ESL-CONFIRM-1] A price counts as displayed only when the tag (or display) confirms
 * the content hash the edge computed for it; a message sent is not a price shown.
 * [ESL-LATEST-1] Latest wins: newer content for a tag replaces older content still queued.
 */

// ---------- tag formats (OEPL dataTypes, sizes) ----------

export const ESL_SIZES = {
  '1.54': { width: 152, height: 152 },
  '2.9': { width: 296, height: 128 },
  '4.2': { width: 400, height: 300 },
} as const;
export type EslSize = keyof typeof ESL_SIZES;
export const ESL_SIZE_NAMES = Object.keys(ESL_SIZES) as EslSize[];
export type EslBpp = 1 | 2;

/** OEPL dataType codes. */
export const ESL_DATA_TYPE = { NOUPDATE: 0x00, RAW_1BPP: 0x20, RAW_2BPP: 0x21 } as const;

/** Raw image bytes: one bit plane (black) for 1 bpp, black plane then red plane for 2 bpp. */
export function eslRawBytes(size: EslSize, bpp: EslBpp): number {
  const { width, height } = ESL_SIZES[size];
  return ((width * height) / 8) * bpp;
}

/** OEPL radio and power constants (shared/reference/01-esl.md). */
export const OEPL = {
  intervalBaseS: 40,
  intervalMaxS: 600,
  apMaxPending: 250,
  blockBytes: 4096,
  partBytes: 99,
  blockMaxParts: 42,
  /** wakeupReason >= this (first boot, network scan, watchdog): the tag lost its image. */
  wakeRebootMin: 0xe0,
  batteryMinimumMv: 2450,
} as const;

// ---------- content (what the cloud asks a tag to show) ----------

export const Mac = Type.String({ pattern: '^[0-9A-F]{16}$', description: 'tag MAC, 16 upper hex digits' });
export const DataVer = Type.String({ pattern: '^[0-9a-f]{16}$', description: 'first 8 bytes of MD5, hex' });
export const SizeSchema = Type.Union(ESL_SIZE_NAMES.map((s) => Type.Literal(s)));
export const BppSchema = Type.Union([Type.Literal(1), Type.Literal(2)]);

export const LabelContentSchema = Type.Object(
  {
    sku: Type.String({ minLength: 1, maxLength: 32 }),
    name: Type.String({ maxLength: 64 }),
    priceCents: Type.Integer({ minimum: 0, maximum: 99_999_999 }),
    currency: Type.String({ minLength: 1, maxLength: 3 }),
    /** Promotional price (the regular price is shown struck through). */
    promoCents: Type.Optional(Type.Integer({ minimum: 0, maximum: 99_999_999 })),
    promoEndsAt: Type.Optional(Millis),
    /** EAN-13 digits (or any text, drawn as Code 128). */
    barcode: Type.Optional(Type.String({ maxLength: 32 })),
    /** Template from the cloud price book: which code to draw. */
    code: Type.Optional(Type.Union([Type.Literal('barcode'), Type.Literal('qr'), Type.Literal('none')])),
  },
  { additionalProperties: false },
);
export type LabelContent = Static<typeof LabelContentSchema>;

export const CampaignItemSchema = Type.Object(
  {
    tag: Mac,
    size: SizeSchema,
    bpp: BppSchema,
    /** The AP the tag was linked to; the edge prefers the AP it last checked in with. */
    ap: Type.Optional(Id),
    content: LabelContentSchema,
  },
  { additionalProperties: false },
);
export type CampaignItem = Static<typeof CampaignItemSchema>;

export const CampaignId = Type.String({ pattern: '^[A-Za-z0-9_-]{1,40}$' });

export const EslCampaignPayload = Type.Object(
  {
    campaignId: CampaignId,
    /** Items may come in several commands for one campaign (chunks of at most 500). */
    items: Type.Array(CampaignItemSchema, { maxItems: 500 }),
    /** Signage screens: a display id and the content it must show. */
    displays: Type.Optional(
      Type.Array(Type.Object({ display: Id, content: LabelContentSchema }, { additionalProperties: false }), {
        maxItems: 100,
      }),
    ),
  },
  { additionalProperties: false },
);
export type EslCampaign = Static<typeof EslCampaignPayload>;

export const EslCancelPayload = Type.Object({ campaignId: CampaignId }, { additionalProperties: false });

// ---------- edge ↔ AP (edge-local, dev/{ap}/...) ----------

export const ApPushItem = Type.Object(
  {
    mac: Mac,
    dataVer: DataVer,
    dataType: Type.Integer({ minimum: 0, maximum: 255 }),
    /** base64 raw image */
    data: Type.String(),
    /** Minutes the AP keeps the item before reporting a timeout (OEPL attemptsLeft). */
    attempts: Type.Integer({ minimum: 1, maximum: 1440 }),
  },
  { additionalProperties: false },
);
export type ApPushItemT = Static<typeof ApPushItem>;
/** Payload of `dev/{ap}/cmd/esl.push` (inside the DeviceCommand envelope). */
export const ApPushPayload = Type.Object({ items: Type.Array(ApPushItem, { maxItems: 250 }) });
/** Payload of `dev/{ap}/cmd/esl.cancel`. */
export const ApCancelPayload = Type.Object({ macs: Type.Array(Mac, { maxItems: 250 }) });
export const AP_PUSH = 'esl.push';
export const AP_CANCEL = 'esl.cancel';
export const DISPLAY_SHOW = 'esl.show';

export const TagCheckin = Type.Object(
  {
    mac: Mac,
    at: Millis,
    batteryMv: Type.Integer({ minimum: 0, maximum: 10000 }),
    temperature: Type.Integer({ minimum: -60, maximum: 120 }),
    rssi: Type.Integer({ minimum: -128, maximum: 127 }),
    lqi: Type.Integer({ minimum: 0, maximum: 255 }),
    wakeReason: Type.Integer({ minimum: 0, maximum: 255 }),
    hwType: Type.Optional(Type.Integer({ minimum: 0, maximum: 255 })),
  },
  { additionalProperties: false },
);
export type TagCheckinT = Static<typeof TagCheckin>;
const MacVer = Type.Object({ mac: Mac, dataVer: DataVer, at: Millis }, { additionalProperties: false });
export type MacVerT = Static<typeof MacVer>;
const ApBatch = <T extends ReturnType<typeof Type.Object>>(item: T) =>
  Type.Object(
    {
      id: Type.Optional(Type.String({ pattern: '^[A-Za-z0-9_.:-]{1,64}$' })),
      ts: Type.Optional(Millis),
      items: Type.Array(item, { minItems: 1, maxItems: 500 }),
    },
    { additionalProperties: false },
  );

export const ESL_CHECKIN = 'esl.checkin';
export const ESL_XFER_COMPLETE = 'esl.xfer_complete';
export const ESL_XFER_TIMEOUT = 'esl.xfer_timeout';
export const ESL_PUSH_NACK = 'esl.push_nack';
export const ESL_SHOWN = 'esl.shown';
export const ESL_AP_EVENTS = [ESL_CHECKIN, ESL_XFER_COMPLETE, ESL_XFER_TIMEOUT, ESL_PUSH_NACK, ESL_SHOWN];

export const EslCheckinPayload = ApBatch(TagCheckin);
export const EslXferPayload = ApBatch(MacVer);
export const EslPushNackPayload = ApBatch(
  Type.Object(
    {
      mac: Mac,
      dataVer: DataVer,
      reason: Type.Union([Type.Literal('queue_full'), Type.Literal('bad_item')]),
    },
    { additionalProperties: false },
  ),
);
export const EslShownPayload = Type.Object(
  { id: Type.Optional(Type.String({ maxLength: 64 })), ts: Type.Optional(Millis), hash: DataVer },
  { additionalProperties: false },
);

// ---------- edge → cloud ----------

export const TAG_STATES = ['pushed', 'confirmed', 'failed', 'superseded', 'cancelled'] as const;
export type TagState = (typeof TAG_STATES)[number];
export const TAG_FAIL_REASONS = ['no_checkin', 'low_battery', 'transfer_failed', 'queue_full'] as const;
export type TagFailReason = (typeof TAG_FAIL_REASONS)[number];

export const EslTagStatePayload = Type.Object(
  {
    campaignId: CampaignId,
    tag: Type.String({ minLength: 1, maxLength: 64, description: 'tag MAC or display id' }),
    state: Type.Union(TAG_STATES.map((s) => Type.Literal(s))),
    dataVer: Type.Optional(DataVer),
    reason: Type.Optional(Type.Union(TAG_FAIL_REASONS.map((s) => Type.Literal(s)))),
    at: Millis,
  },
  { additionalProperties: false },
);
export type EslTagState = Static<typeof EslTagStatePayload>;

export const EslTagStatusPayload = Type.Object(
  {
    tags: Type.Array(
      Type.Object(
        {
          tag: Mac,
          ap: Id,
          batteryMv: Type.Integer(),
          temperature: Type.Integer(),
          rssi: Type.Integer(),
          lastCheckin: Millis,
        },
        { additionalProperties: false },
      ),
      { maxItems: 1000 },
    ),
  },
  { additionalProperties: false },
);

export const EslAlertPayload = Type.Object(
  {
    tag: Type.String({ maxLength: 64 }),
    code: Type.Union([Type.Literal('LOW_BATTERY'), Type.Literal('SILENT')]),
    active: Type.Boolean(),
    batteryMv: Type.Optional(Type.Integer()),
    lastCheckin: Type.Optional(Millis),
  },
  { additionalProperties: false },
);

export const ESL_CAMPAIGN = 'esl.campaign';
export const ESL_CANCEL = 'esl.cancel';
export const ESL_TAG_STATE = 'esl.tag_state';
export const ESL_TAG_STATUS = 'esl.tag_status';
export const ESL_ALERT = 'esl.alert';

registerCommandType(ESL_CAMPAIGN, {
  executor: 'gateway',
  payload: EslCampaignPayload,
  description: 'price campaign: the content each tag/display must show; the edge renders and pushes it',
});
registerCommandType(ESL_CANCEL, {
  executor: 'gateway',
  payload: EslCancelPayload,
  description: 'cancel a campaign: queued content not yet confirmed is withdrawn',
});
for (const [type, payload, description] of [
  [
    ESL_CHECKIN,
    EslCheckinPayload,
    'ESL access point: tag check-ins (battery, temperature, signal, wake reason)',
  ],
  [ESL_XFER_COMPLETE, EslXferPayload, 'ESL access point: a tag confirmed the image with this dataVer'],
  [ESL_XFER_TIMEOUT, EslXferPayload, 'ESL access point: a pending image timed out (OEPL XTO)'],
  [ESL_PUSH_NACK, EslPushNackPayload, 'ESL access point: refused a pushed image (queue full: 250 items)'],
  [ESL_SHOWN, EslShownPayload, 'signage display: now showing the content with this hash'],
] as const) {
  registerEventType(type, { lane: 'event', source: 'device', payload, description });
}
registerEventType(ESL_TAG_STATE, {
  lane: 'event',
  source: 'edge',
  payload: EslTagStatePayload,
  description: 'price campaign progress per tag: pushed, confirmed (by content hash), failed, superseded',
});
registerEventType(ESL_TAG_STATUS, {
  lane: 'telemetry',
  source: 'edge',
  payload: EslTagStatusPayload,
  description: 'ESL tag health: battery, temperature, signal, last check-in',
});
registerEventType(ESL_ALERT, {
  lane: 'event',
  source: 'edge',
  payload: EslAlertPayload,
  description: 'ESL tag alert raised or cleared: low battery, silent (no check-in)',
});
