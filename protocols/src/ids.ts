import { monotonicFactory } from 'ulidx';

/** Ids of sites, gateways and devices: safe as one MQTT topic level and as a file name. */
export const ID_PATTERN = '^[A-Za-z0-9_.-]{1,64}$';
const ID_RE = new RegExp(ID_PATTERN);

export function isValidId(value: unknown): value is string {
  return typeof value === 'string' && ID_RE.test(value) && value !== '.' && value !== '..';
}

const nextUlid = monotonicFactory();

/** A ULID: sortable by creation time, unique without coordination. */
export function newId(now: number = Date.now()): string {
  return nextUlid(now);
}
