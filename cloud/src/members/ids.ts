/**
 * Identifier types a member can be known by (docs/members.md "Identity"), after Alibaba
 * Quick Audience's ID types and RudderStack's id stitcher: each type has a priority
 * (lower = stronger; stronger links are applied first when caps conflict) and a cap (how
 * many ids of that type one member may hold) [ID-CAP-1].
 *
 * `member` is the cloud's own member id as an identifier: every member holds the id it
 * was created with, so anything keyed by a member id (coupons, face-gallery entries,
 * recognitions) follows the member through merges and back through an unmerge.
 */
export const ID_TYPES = {
  member: { priority: 0, cap: Number.POSITIVE_INFINITY, description: 'cloud member id (OneID)' },
  member_card: { priority: 1, cap: 1, description: 'brand member card number' },
  phone: { priority: 2, cap: 1, description: 'mobile number, +86 digits' },
  wechat_unionid: { priority: 3, cap: 1, description: 'WeChat UnionID (across the brand’s apps)' },
  alipay_user_id: { priority: 4, cap: 1, description: 'Alipay user id (2088…)' },
  app_user_id: { priority: 5, cap: 1, description: 'brand app account' },
  tmall_id: { priority: 6, cap: 1, description: 'Tmall/Taobao member id (淘天会员通)' },
  wechat_openid: {
    priority: 7,
    cap: 5,
    description: 'WeChat OpenID (one per mini-program / official account)',
  },
  face_id: { priority: 8, cap: 1, description: 'face-gallery entry id (consenting members only)' },
  device_id: { priority: 9, cap: 10, description: 'anonymous device-scoped id (app install, kiosk session)' },
} as const;
export type IdType = keyof typeof ID_TYPES;
export const ID_TYPE_NAMES = Object.keys(ID_TYPES) as IdType[];

export function isIdType(t: string): t is IdType {
  return Object.hasOwn(ID_TYPES, t);
}

/** An identifier as stored: `type:value` (the value normalised). */
export type IdKey = string;

export function idKey(type: IdType, value: string): IdKey {
  return `${type}:${value}`;
}

export function parseIdKey(k: IdKey): { type: IdType; value: string } {
  const i = k.indexOf(':');
  return { type: k.slice(0, i) as IdType, value: k.slice(i + 1) };
}

export function typeOf(k: IdKey): IdType {
  return k.slice(0, k.indexOf(':')) as IdType;
}

/** Values that mean "no id" in some channel's export: never link anything [ID-JUNK-1]. */
const JUNK_VALUES = new Set([
  '',
  '0',
  '-1',
  'null',
  'nil',
  'none',
  'undefined',
  'unknown',
  'nan',
  'n/a',
  'na',
  'test',
  'anonymous',
  'guest',
  '(null)',
  '[]',
  '{}',
]);

/** Test and placeholder phone numbers seen in staging data [ID-JUNK-1]. */
const JUNK_PHONES = new Set(['13800138000', '13888888888', '12345678901', '13000000000', '18888888888']);

export type Normalised =
  | { ok: true; key: IdKey; type: IdType; value: string }
  | { ok: false; reason: string };

/**
 * Normalises a raw id from a channel: trims, lower-cases what is case-insensitive, strips
 * the +86 prefix of phones; refuses junk with the reason [ID-JUNK-1].
 */
export function normaliseId(type: string, raw: unknown): Normalised {
  if (!isIdType(type)) return { ok: false, reason: `unknown id type "${type}"` };
  if (typeof raw !== 'string' && typeof raw !== 'number')
    return { ok: false, reason: 'value is not a string' };
  let v = String(raw).trim();
  if (JUNK_VALUES.has(v.toLowerCase())) return { ok: false, reason: `junk value "${v}"` };
  if (v.length > 128) return { ok: false, reason: 'value longer than 128 characters' };
  if (/^(.)\1+$/.test(v)) return { ok: false, reason: `junk value "${v}" (one repeated character)` };
  switch (type) {
    case 'phone': {
      v = v.replace(/[\s-]/g, '').replace(/^(\+?86)(?=1\d{10}$)/, '');
      if (!/^1[3-9]\d{9}$/.test(v)) return { ok: false, reason: `"${v}" is not a mainland mobile number` };
      if (JUNK_PHONES.has(v) || /^1\d(\d)\1{8}$/.test(v))
        return { ok: false, reason: `"${v}" is a test or placeholder number` };
      break;
    }
    case 'alipay_user_id':
      if (!/^2088\d{12}$/.test(v))
        return { ok: false, reason: `"${v}" is not an Alipay user id (2088 + 12 digits)` };
      break;
    case 'member_card':
    case 'app_user_id':
    case 'tmall_id':
      v = v.toUpperCase();
      break;
    default:
      break;
  }
  if (!/^[\x21-\x7e]+$/.test(v)) return { ok: false, reason: 'value has spaces or non-ASCII characters' };
  return { ok: true, key: idKey(type, v), type, value: v };
}

export function priorityOf(k: IdKey): number {
  return ID_TYPES[typeOf(k)].priority;
}

export function capOf(t: IdType, caps?: Partial<Record<IdType, number>>): number {
  return caps?.[t] ?? ID_TYPES[t].cap;
}
