import { isValidId } from './ids.ts';

/**
 * The two topic trees. Edge-local topics live on the edge agent's broker and belong to
 * one device each; cloud topics live on the cloud broker and belong to one gateway each.
 * Builders and parsers are pairs: `parseX(buildX(a)) == a` for every valid `a`.
 */

// ---------- edge-local tree: dev/{deviceId}/... ----------

export const DEVICE_ROOT = 'dev';

/** device → edge: an event of `type`. */
export const deviceEventTopic = (deviceId: string, type: string) => `dev/${deviceId}/evt/${type}`;
/** edge → device: a command of `type`. */
export const deviceCommandTopic = (deviceId: string, type: string) => `dev/${deviceId}/cmd/${type}`;
/** device → edge: the result of command `commandId`. */
export const deviceResultTopic = (deviceId: string, commandId: string) => `dev/${deviceId}/res/${commandId}`;
/** device → edge, retained: the device's own state document. */
export const deviceStateTopic = (deviceId: string) => `dev/${deviceId}/state`;
/** edge → device: coded errors about what the device sent (it has no other way to learn them). */
export const deviceErrorTopic = (deviceId: string) => `dev/${deviceId}/err`;
/** The subtree a device may touch, as an MQTT filter. */
export const deviceSubtreeFilter = (deviceId: string) => `dev/${deviceId}/#`;

export type DeviceTopic =
  | { kind: 'evt'; deviceId: string; type: string }
  | { kind: 'cmd'; deviceId: string; type: string }
  | { kind: 'res'; deviceId: string; commandId: string }
  | { kind: 'state'; deviceId: string }
  | { kind: 'err'; deviceId: string };

const EVENT_TYPE_RE = /^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$/;

export function isValidTypeName(type: string): boolean {
  return type.length <= 64 && EVENT_TYPE_RE.test(type);
}

/** Parses an edge-local topic; `null` when it is not one of ours (the caller reports why). */
export function parseDeviceTopic(topic: string): DeviceTopic | null {
  const parts = topic.split('/');
  if (parts[0] !== DEVICE_ROOT || !isValidId(parts[1])) return null;
  const deviceId = parts[1];
  if (parts.length === 3 && parts[2] === 'state') return { kind: 'state', deviceId };
  if (parts.length === 3 && parts[2] === 'err') return { kind: 'err', deviceId };
  if (parts.length !== 4) return null;
  const leaf = parts[3]!;
  switch (parts[2]) {
    case 'evt':
      return isValidTypeName(leaf) ? { kind: 'evt', deviceId, type: leaf } : null;
    case 'cmd':
      return isValidTypeName(leaf) ? { kind: 'cmd', deviceId, type: leaf } : null;
    case 'res':
      return isValidId(leaf) ? { kind: 'res', deviceId, commandId: leaf } : null;
    default:
      return null;
  }
}

/** True when `filterOrTopic` stays inside `dev/{deviceId}/` (no wildcard escapes it). */
export function isInDeviceSubtree(deviceId: string, filterOrTopic: string): boolean {
  const prefix = `dev/${deviceId}/`;
  if (!filterOrTopic.startsWith(prefix)) return false;
  return filterOrTopic.length > prefix.length;
}

// ---------- cloud tree: sl/v1/{site}/{gateway}/... ----------

export const CLOUD_ROOT = 'sl/v1';

export type GatewayChannel = 'up' | 'ack' | 'cmd' | 'state' | 'hb' | 'shadow/desired' | 'shadow/reported';
export const GATEWAY_CHANNELS: readonly GatewayChannel[] = [
  'up',
  'ack',
  'cmd',
  'state',
  'hb',
  'shadow/desired',
  'shadow/reported',
];

/** Channels a gateway publishes to; everything else on its subtree it may only read. */
export const GATEWAY_PUBLISH_CHANNELS: readonly GatewayChannel[] = ['up', 'state', 'hb', 'shadow/reported'];
/** Channels a gateway subscribes to. */
export const GATEWAY_SUBSCRIBE_CHANNELS: readonly GatewayChannel[] = ['ack', 'cmd', 'shadow/desired'];

export interface GatewayAddress {
  site: string;
  gateway: string;
}

export const gatewayTopic = (a: GatewayAddress, channel: GatewayChannel) =>
  `${CLOUD_ROOT}/${a.site}/${a.gateway}/${channel}`;

/** Filter the cloud services use to hear a channel from every gateway. */
export const allGatewaysFilter = (channel: GatewayChannel) => `${CLOUD_ROOT}/+/+/${channel}`;

export function parseGatewayTopic(topic: string): (GatewayAddress & { channel: GatewayChannel }) | null {
  const parts = topic.split('/');
  if (parts.length < 5 || `${parts[0]}/${parts[1]}` !== CLOUD_ROOT) return null;
  const site = parts[2]!;
  const gateway = parts[3]!;
  if (!isValidId(site) || !isValidId(gateway)) return null;
  const channel = parts.slice(4).join('/') as GatewayChannel;
  return GATEWAY_CHANNELS.includes(channel) ? { site, gateway, channel } : null;
}
