import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import {
  GATEWAY_PUBLISH_CHANNELS,
  GATEWAY_SUBSCRIBE_CHANNELS,
  isValidId,
  parseGatewayTopic,
} from '@storelink/protocols';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { cloudError } from './errors.ts';
import type { CloudMetrics } from './metrics.ts';
import { secretEquals, verifyPassword } from './passwords.ts';
import type { GatewayCredentials } from './store/store.ts';

/**
 * The embedded cloud broker (aedes over TCP). Policy lives in its hooks and denies by
 * default (house style 7):
 * - the cloud's own service clients (service username + password) may do anything;
 * - a gateway authenticates as username = gateway id + its scrypt-checked password, and
 *   may publish only to its own sl/v1/{site}/{gw}/(up|state|hb|shadow/reported) and
 *   subscribe only to its own .../(ack|cmd|shadow/desired) [BROKER-ACL-1];
 * - a client id in use by another identity cannot be taken over [BROKER-ACL-2];
 * - everything else is refused, counted (storelink_cloud_broker_refused_total{reason})
 *   and logged with a CLOUD_ERR_* code.
 * The services never call aedes directly: they are ordinary MQTT clients, so this broker
 * can be swapped for Mosquitto or EMQX (`broker.mode: external`).
 */

export type BrokerIdentity =
  | { kind: 'service'; username: string }
  | { kind: 'gateway'; id: string; site: string };

export interface EmbeddedBrokerOptions {
  host: string;
  /** 0 = a free port. */
  port: number;
  service: { username: string; password: string };
  credentials: (gatewayId: string) => Promise<GatewayCredentials | undefined>;
  metrics: CloudMetrics;
  logger: Logger;
}

export interface EmbeddedBroker {
  /** mqtt://host:port as gateways and services should dial it. */
  url: string;
  host: string;
  port: number;
  aedes: Aedes;
  close(): Promise<void>;
}

const REFUSE_AUTH = 4; // CONNACK 0x04 bad user name or password [MQTT-3.2.2-5]
const REFUSE_ID = 2; // CONNACK 0x02 identifier rejected

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { metrics, logger } = opts;
  const log = logger.child({ component: 'broker' });
  const identities = new WeakMap<Client, BrokerIdentity>();
  let aedesRef: Aedes | undefined;

  const refuse = (
    reason: string,
    code: 'CLOUD_ERR_AUTH' | 'CLOUD_ERR_ACL',
    details: Record<string, unknown>,
  ) => {
    metrics.brokerRefused.inc({ reason });
    const err = cloudError(code, details);
    log.warn({ code, reason, ...details }, err.message);
    return err;
  };

  const sameIdentity = (a: BrokerIdentity | undefined, b: BrokerIdentity) =>
    a !== undefined &&
    a.kind === b.kind &&
    (a.kind === 'service' ? a.username === (b as typeof a).username : a.id === (b as typeof a).id);

  const aedes = await Aedes.createBroker({
    authenticate(client, username, password, done) {
      const user = username ?? '';
      const pass = password ? password.toString('utf8') : '';
      const identify = async (): Promise<BrokerIdentity | undefined> => {
        if (user === opts.service.username) {
          return secretEquals(pass, opts.service.password) ? { kind: 'service', username: user } : undefined;
        }
        if (!isValidId(user)) return undefined;
        const creds = await opts.credentials(user);
        if (!creds || !(await verifyPassword(pass, creds.passwordHash))) return undefined;
        return { kind: 'gateway', id: creds.id, site: creds.site };
      };
      identify().then(
        (who) => {
          if (!who) {
            refuse('auth', 'CLOUD_ERR_AUTH', { username: user, client: client.id });
            return done(authError('bad user name or password', REFUSE_AUTH), false);
          }
          // [BROKER-ACL-2] MQTT lets a new connection with the same client id close the
          // old one [MQTT-3.1.4-2]; only the same identity may do that.
          const holder = (aedesRef as unknown as { clients: Record<string, Client> } | undefined)?.clients[
            client.id
          ];
          if (holder && !holder.closed && !sameIdentity(identities.get(holder), who)) {
            refuse('takeover', 'CLOUD_ERR_ACL', {
              client: user,
              action: 'take over client id',
              topic: client.id,
            });
            return done(authError('client id in use', REFUSE_ID), false);
          }
          identities.set(client, who);
          done(null, true);
        },
        (e: unknown) => {
          // The store is down: refuse without blaming the client's credentials.
          log.error({ err: e, code: 'CLOUD_ERR_STORE', username: user }, 'credential lookup failed');
          metrics.brokerRefused.inc({ reason: 'store' });
          done(authError('server unavailable', 3), false);
        },
      );
    },

    authorizePublish(client, packet, done) {
      const who = client ? identities.get(client) : undefined;
      if (who?.kind === 'service') return done(null);
      const t = parseGatewayTopic(packet.topic);
      if (
        who?.kind === 'gateway' &&
        t !== null &&
        t.gateway === who.id &&
        t.site === who.site &&
        GATEWAY_PUBLISH_CHANNELS.includes(t.channel)
      ) {
        // Only presence and reported shadow are state; a retained batch or heartbeat
        // would be replayed to every new subscriber.
        if (t.channel === 'up' || t.channel === 'hb') packet.retain = false;
        return done(null);
      }
      // A refused PUBLISH closes the connection, as MQTT 3.1.1 allows [MQTT-3.3.5-2]:
      // there is no way to tell a QoS1 publisher "no" otherwise.
      done(
        refuse('acl_publish', 'CLOUD_ERR_ACL', {
          client: who?.kind === 'gateway' ? who.id : (client?.id ?? '(will of a lost session)'),
          action: 'publish to',
          topic: packet.topic,
        }),
      );
    },

    authorizeSubscribe(client, sub, done) {
      const who = identities.get(client);
      if (who?.kind === 'service') return done(null, sub);
      const t = parseGatewayTopic(sub.topic);
      if (
        who?.kind === 'gateway' &&
        t !== null &&
        t.gateway === who.id &&
        t.site === who.site &&
        GATEWAY_SUBSCRIBE_CHANNELS.includes(t.channel)
      ) {
        return done(null, sub);
      }
      refuse('acl_subscribe', 'CLOUD_ERR_ACL', {
        client: who?.kind === 'gateway' ? who.id : client.id,
        action: 'subscribe to',
        topic: sub.topic,
      });
      // SUBACK 0x80 for this filter; the connection stays up.
      done(null, null);
    },
  });
  aedesRef = aedes;
  aedes.on('client', () => metrics.brokerClients.inc());
  aedes.on('clientDisconnect', () => metrics.brokerClients.dec());
  aedes.on('clientError', (client, err) =>
    log.debug({ client: client?.id, err: err.message }, 'client error'),
  );
  aedes.on('connectionError', (client, err) =>
    log.debug({ client: client?.id, err: err.message }, 'connection error'),
  );

  const server: Server = createServer(aedes.handle);
  server.listen(opts.port, opts.host);
  try {
    await once(server, 'listening');
  } catch (e) {
    await new Promise<void>((r) => aedes.close(() => r()));
    throw cloudError(
      'CLOUD_ERR_BROKER',
      { client: 'embedded broker', reason: (e as Error).message },
      { cause: e },
    );
  }
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : opts.port;
  const dialHost = opts.host === '0.0.0.0' || opts.host === '::' ? '127.0.0.1' : opts.host;
  log.info({ port, host: opts.host }, 'embedded broker listening');

  let closing: Promise<void> | undefined;
  return {
    url: `mqtt://${dialHost.includes(':') ? `[${dialHost}]` : dialHost}:${port}`,
    host: opts.host,
    port,
    aedes,
    close() {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((r) => server.close(() => r()));
        await new Promise<void>((r) => aedes.close(() => r()));
        await serverClosed;
      })();
      return closing;
    },
  };
}
