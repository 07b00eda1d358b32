import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import {
  deviceErrorTopic,
  type DeviceTopic,
  isInDeviceSubtree,
  LIMITS,
  parseDeviceTopic,
  protoError,
  type StorelinkError,
} from '@storelink/protocols';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { createWebSocketStream, WebSocketServer } from 'ws';
import { edgeError } from '../errors.ts';
import type { Done } from '../ingest/event.ts';
import type { EdgeMetrics } from '../metrics.ts';
import type { DeviceAuth } from './auth.ts';
import type { Presence } from './presence.ts';

export interface BrokerHandlers {
  /** A device event on dev/{id}/evt/{type}; `done()` PUBACKs, `done(err)` closes the connection. */
  event(deviceId: string, type: string, topic: string, payload: Buffer, done: Done): void;
  /** A device's answer on dev/{id}/res/{commandId}. */
  result(deviceId: string, commandId: string, payload: Buffer, done: Done): void;
}

export interface EdgeBrokerOptions {
  host: string;
  port: number;
  /** null/undefined = no WebSocket listener; 0 = a random free port. */
  wsPort?: number | null;
  auth: DeviceAuth;
  presence: Presence;
  handlers: BrokerHandlers;
  metrics: EdgeMetrics;
  logger: Logger;
}

export interface EdgeBroker {
  aedes: Aedes;
  port: number;
  wsPort: number | null;
  listening(): boolean;
  /** Publishes from the agent itself (no client: bypasses authorizePublish). */
  publish(topic: string, payload: string | Buffer, qos?: 0 | 1, retain?: boolean): Promise<void>;
  /** Tells a device what was wrong with what it sent. */
  reportToDevice(deviceId: string, topic: string, error: StorelinkError): void;
  /** Stops accepting new connections (existing ones stay until close). */
  stopListening(): Promise<unknown>;
  close(): Promise<void>;
}

/** Which device a client authenticated as (set by `authenticate`, read by every other hook). */
const deviceOf = new WeakMap<Client, string>();

function authError(returnCode: 4 | 5, message: string): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

/**
 * Devices publish on the same few topics over and over; parsing (split + id checks) was
 * ~0.5 µs of every message on the broker's thread. Bounded: cleared when it fills.
 */
const topicCache = new Map<string, DeviceTopic | null>();
const TOPIC_CACHE_MAX = 8192;
function parseTopicCached(topic: string): DeviceTopic | null {
  let t = topicCache.get(topic);
  if (t === undefined) {
    t = parseDeviceTopic(topic);
    if (topicCache.size >= TOPIC_CACHE_MAX) topicCache.clear();
    topicCache.set(topic, t);
  }
  return t;
}

export async function startEdgeBroker(o: EdgeBrokerOptions): Promise<EdgeBroker> {
  const { metrics, logger, presence, handlers } = o;
  let listening = false;

  const aedes = await Aedes.createBroker({
    // Deny by default [AUTH-1]: only configured devices, each with its own password.
    authenticate(client, username, password, done) {
      const r = o.auth.check(username, password);
      if (!r.ok) {
        metrics.authFailures.inc({ reason: r.reason });
        const err = edgeError('EDGE_ERR_AUTH', { username: username ?? '' });
        logger.warn({ code: err.code, username, clientId: client.id, reason: r.reason }, err.message);
        // 4 = bad user name or password, 5 = not authorised (no credentials at all).
        return done(authError(r.reason === 'no_credentials' ? 5 : 4, err.message), false);
      }
      deviceOf.set(client, username!);
      // The same client id connecting again takes the old connection over [MQTT-3.1.4-2].
      const old = (aedes as unknown as { clients: Record<string, Client> }).clients[client.id];
      if (old && old !== client) presence.markReason(old, 'taken_over');
      done(null, true);
    },

    // [ACL-PUB-1] a device publishes only dev/{itsId}/evt/{type}, res/{cmdId}, state.
    authorizePublish(client, packet, done) {
      const deviceId = client ? deviceOf.get(client) : undefined;
      const t = parseTopicCached(packet.topic);
      if (!deviceId || !t || t.deviceId !== deviceId || t.kind === 'cmd' || t.kind === 'err') {
        metrics.aclDenied.inc({ kind: 'publish' });
        const err = edgeError('EDGE_ERR_ACL_PUBLISH', { deviceId: deviceId ?? '?', topic: packet.topic });
        logger.warn({ code: err.code, device: deviceId, topic: packet.topic }, err.message);
        // MQTT 3.1.1 has no negative PUBACK; closing is what MQTT-3.3.5-2 allows.
        return done(err);
      }
      presence.seen(deviceId);
      switch (t.kind) {
        case 'evt':
          // Events travel through the outbox, never as broker state.
          packet.retain = false;
          return handlers.event(deviceId, t.type, packet.topic, packet.payload as Buffer, done);
        case 'res':
          packet.retain = false;
          return handlers.result(deviceId, t.commandId, packet.payload as Buffer, done);
        default: {
          // dev/{id}/state: the device's own retained document, kept by the broker only,
          // under the same size limit as events.
          const size = (packet.payload as Buffer).length;
          if (size > LIMITS.devicePayloadBytes) {
            packet.retain = false;
            packet.payload = Buffer.alloc(0);
            const e = protoError('PROTO_ERR_OVERSIZE', { size, limit: LIMITS.devicePayloadBytes });
            metrics.rejected.inc({ code: e.code });
            logger.warn({ device: deviceId, topic: packet.topic, code: e.code }, e.message);
            reportToDevice(deviceId, packet.topic, e);
          }
          return done(null);
        }
      }
    },

    // [ACL-SUB-1] only inside dev/{itsId}/; a refused filter gets SUBACK 0x80, the connection stays.
    authorizeSubscribe(client, sub, done) {
      const deviceId = deviceOf.get(client);
      if (deviceId && isInDeviceSubtree(deviceId, sub.topic)) return done(null, sub);
      metrics.aclDenied.inc({ kind: 'subscribe' });
      const err = edgeError('EDGE_ERR_ACL_SUBSCRIBE', { deviceId: deviceId ?? '?', topic: sub.topic });
      logger.warn({ code: err.code, device: deviceId, topic: sub.topic }, err.message);
      done(null, null);
    },

    // Device events and results go to the outbox and the command router only: a
    // message (valid or refused) is never delivered onward through the broker.
    authorizeForward(_client, packet) {
      const t = packet.topic;
      if (t.startsWith('dev/') && (t.includes('/evt/') || t.includes('/res/'))) return null;
      return packet;
    },
  });

  aedes.on('clientReady', (client) => {
    const d = deviceOf.get(client);
    if (d) presence.connected(d, client);
  });
  aedes.on('keepaliveTimeout', (client) => presence.markReason(client, 'keepalive_timeout'));
  aedes.on('clientDisconnect', (client) => {
    const d = deviceOf.get(client);
    if (d) presence.disconnected(d, client);
  });
  aedes.on('clientError', (client, err) => {
    logger.debug({ clientId: client.id, err: err.message }, 'client error');
  });
  aedes.on('connectionError', (client, err) => {
    logger.debug({ clientId: client?.id, err: err.message }, 'connection error');
  });

  const tcp: Server = createServer(aedes.handle);
  await new Promise<void>((res, rej) => {
    tcp.once('error', rej);
    tcp.listen(o.port, o.host, () => {
      tcp.off('error', rej);
      res();
    });
  });
  const port = (tcp.address() as { port: number }).port;

  let http: HttpServer | null = null;
  let wss: WebSocketServer | null = null;
  let wsPort: number | null = null;
  if (o.wsPort !== null && o.wsPort !== undefined) {
    http = createHttpServer();
    wss = new WebSocketServer({ server: http });
    wss.on('connection', (ws, req) => {
      const stream = createWebSocketStream(ws);
      stream.on('error', () => stream.destroy());
      aedes.handle(stream, req);
    });
    const h = http;
    await new Promise<void>((res, rej) => {
      h.once('error', rej);
      h.listen(o.wsPort!, o.host, () => {
        h.off('error', rej);
        res();
      });
    });
    wsPort = (http.address() as { port: number }).port;
  }
  listening = true;
  logger.info({ port, wsPort }, 'edge broker listening');

  function reportToDevice(deviceId: string, topic: string, error: StorelinkError): void {
    const body = JSON.stringify({ code: error.code, message: error.message, fix: error.fix, topic });
    publish(deviceErrorTopic(deviceId), body, 1).catch((e) =>
      logger.debug({ err: (e as Error).message }, 'could not publish device error'),
    );
  }

  const publish = (topic: string, payload: string | Buffer, qos: 0 | 1 = 1, retain = false) =>
    new Promise<void>((res, rej) =>
      aedes.publish(
        {
          cmd: 'publish',
          topic,
          payload: typeof payload === 'string' ? Buffer.from(payload) : payload,
          qos,
          retain,
          dup: false,
        },
        (err) => (err ? rej(err) : res()),
      ),
    );

  // Stops accepting at once; the returned promise settles when the listeners are gone
  // (a listener closes only after its last connection ended).
  let closedListeners: Promise<unknown> | null = null;
  const stopListening = () => {
    if (!closedListeners) {
      listening = false;
      closedListeners = Promise.all([
        new Promise<void>((r) => tcp.close(() => r())),
        wss ? new Promise<void>((r) => wss!.close(() => r())) : undefined,
        http ? new Promise<void>((r) => http!.close(() => r())) : undefined,
      ]);
    }
    return closedListeners;
  };

  return {
    aedes,
    port,
    wsPort,
    listening: () => listening,
    publish,
    reportToDevice,
    stopListening,
    async close() {
      const closing = stopListening();
      closing.catch(() => undefined);
      // Live WebSocket connections keep the http server open: end them with the broker.
      for (const c of wss?.clients ?? []) c.terminate();
      await new Promise<void>((r) => aedes.close(() => r()));
      (http as HttpServer | null)?.closeAllConnections();
      await closing;
    },
  };
}
