import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import {
  GATEWAY_PUBLISH_CHANNELS,
  GATEWAY_SUBSCRIBE_CHANNELS,
  isValidId,
  parseGatewayTopic,
} from '@storelink/protocols';
import { Aedes, type AuthenticateError, type Client } from 'aedes';
import type { Logger } from 'pino';
import { cloudError } from './errors.ts';
import { gatewayIdOfPeer } from './fleet/ca.ts';
import type { CertificateIdentity } from './fleet/provisioning.ts';
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
 * - with `tls`, a second listener does mutual TLS: a client certificate signed by the
 *   cloud CA names the gateway (CN), and is accepted only while the store says it is the
 *   gateway's current one [FLEET-CERT-1]; a revoked gateway is refused on both paths and
 *   `disconnectGateway` drops its live connections at once [FLEET-REVOKE-1];
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
  /** `revokedAt` set: refused as revoked [FLEET-REVOKE-1]. */
  credentials: (
    gatewayId: string,
  ) => Promise<(GatewayCredentials & { revokedAt?: number | null }) | undefined>;
  /** Mutual TLS listener (docs/fleet-provisioning.md); omit for none. */
  tls?: EmbeddedBrokerTls;
  metrics: CloudMetrics;
  logger: Logger;
}

export interface EmbeddedBrokerTls {
  host: string;
  /** 0 = a free port. */
  port: number;
  keyPem: string;
  certPem: string;
  /** The CA gateway certificates must chain to. */
  caPem: string;
  /** Refuse clients without a certificate (else they fall back to the password path). */
  requireClientCert: boolean;
  /** The store's record of a presented certificate, by SHA-256 fingerprint (hex). */
  certificate: (fingerprint: string) => Promise<CertificateIdentity | undefined>;
}

export interface EmbeddedBroker {
  /** mqtt://host:port as gateways and services should dial it. */
  url: string;
  host: string;
  port: number;
  /** mqtts://host:port of the mutual TLS listener, when `tls` was given. */
  tlsUrl: string | undefined;
  tlsPort: number | undefined;
  aedes: Aedes;
  /**
   * [FLEET-REVOKE-1] Closes every live connection of the gateway now (its will goes out,
   * so presence turns offline) and refuses any authentication already in flight for it.
   * Returns how many connections were closed.
   */
  disconnectGateway(gatewayId: string): number;
  close(): Promise<void>;
}

const REFUSE_AUTH = 4; // CONNACK 0x04 bad user name or password [MQTT-3.2.2-5]
const REFUSE_ID = 2; // CONNACK 0x02 identifier rejected
const REFUSE_NOT_AUTHORIZED = 5; // CONNACK 0x05 not authorized

type Verdict =
  | { ok: true; who: BrokerIdentity }
  | {
      ok: false;
      reason: string;
      code: 'CLOUD_ERR_AUTH' | 'CLOUD_ERR_CERT_REFUSED' | 'CLOUD_ERR_GATEWAY_REVOKED';
      detail?: string;
    };

const deny = (
  reason: string,
  code: Extract<Verdict, { ok: false }>['code'] = 'CLOUD_ERR_AUTH',
  detail?: string,
): Verdict => ({
  ok: false,
  reason,
  code,
  ...(detail !== undefined ? { detail } : {}),
});

/** The TLS socket under an aedes client, when it came in on the TLS listener. */
function tlsSocketOf(client: Client): TLSSocket | undefined {
  const conn = client.conn as unknown as Partial<TLSSocket>;
  return typeof conn.getPeerCertificate === 'function' ? (conn as TLSSocket) : undefined;
}

function authError(message: string, returnCode: number): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export async function startEmbeddedBroker(opts: EmbeddedBrokerOptions): Promise<EmbeddedBroker> {
  const { metrics, logger } = opts;
  const log = logger.child({ component: 'broker' });
  const identities = new WeakMap<Client, BrokerIdentity>();
  /** Live connections per gateway id, for `disconnectGateway` [FLEET-REVOKE-1]. */
  const byGateway = new Map<string, Set<Client>>();
  /** Gateways revoked while this broker runs: an authentication in flight is refused too. */
  const revokedHere = new Set<string>();
  let aedesRef: Aedes | undefined;

  const refuse = (
    reason: string,
    code: 'CLOUD_ERR_AUTH' | 'CLOUD_ERR_ACL' | 'CLOUD_ERR_CERT_REFUSED' | 'CLOUD_ERR_GATEWAY_REVOKED',
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
      const tlsSocket = tlsSocketOf(client);
      const identify = async (): Promise<Verdict> => {
        if (tlsSocket && opts.tls) {
          const byCert = await identifyByCertificate(tlsSocket, user, opts.tls);
          if (byCert) return byCert;
          // No certificate presented.
          if (opts.tls.requireClientCert)
            return deny('cert_missing', 'CLOUD_ERR_CERT_REFUSED', 'no client certificate');
        }
        if (user === opts.service.username) {
          return secretEquals(pass, opts.service.password)
            ? { ok: true, who: { kind: 'service', username: user } }
            : deny('auth');
        }
        if (!isValidId(user)) return deny('auth');
        const creds = await opts.credentials(user);
        if (!creds || !(await verifyPassword(pass, creds.passwordHash))) return deny('auth');
        // [FLEET-REVOKE-1] checked after the password, so a revoked id reveals nothing to a guesser.
        if (creds.revokedAt != null) return deny('revoked', 'CLOUD_ERR_GATEWAY_REVOKED');
        return { ok: true, who: { kind: 'gateway', id: creds.id, site: creds.site } };
      };
      identify().then(
        (verdict) => {
          if (verdict.ok && verdict.who.kind === 'gateway' && revokedHere.has(verdict.who.id)) {
            verdict = deny('revoked', 'CLOUD_ERR_GATEWAY_REVOKED');
          }
          if (!verdict.ok) {
            refuse(verdict.reason, verdict.code, {
              username: user,
              client: user || client.id,
              gateway: user || client.id,
              reason: verdict.detail ?? verdict.reason,
            });
            return done(
              authError(
                verdict.code === 'CLOUD_ERR_AUTH' ? 'bad user name or password' : 'not authorized',
                verdict.code === 'CLOUD_ERR_AUTH' ? REFUSE_AUTH : REFUSE_NOT_AUTHORIZED,
              ),
              false,
            );
          }
          const who = verdict.who;
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
          if (who.kind === 'gateway') {
            const set = byGateway.get(who.id) ?? new Set<Client>();
            byGateway.set(who.id, set);
            set.add(client);
          }
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
  aedes.on('clientDisconnect', (client) => {
    metrics.brokerClients.dec();
    const who = identities.get(client);
    if (who?.kind === 'gateway') byGateway.get(who.id)?.delete(client);
  });
  aedes.on('clientError', (client, err) =>
    log.debug({ client: client?.id, err: err.message }, 'client error'),
  );
  aedes.on('connectionError', (client, err) =>
    log.debug({ client: client?.id, err: err.message }, 'connection error'),
  );

  // [BROKER-NODELAY-1] Nagle off: a command written to a gateway whose last segment the
  // gateway has not ACKed yet (Linux delays ACKs up to 40 ms) would otherwise wait for that
  // ACK — measured as a 30-43 ms stall on the payment → VEND APPROVED path (bench dispense).
  const server: Server = createServer({ noDelay: true }, aedes.handle);
  const tlsServer = opts.tls
    ? createTlsServer(
        {
          key: opts.tls.keyPem,
          cert: opts.tls.certPem,
          ca: opts.tls.caPem,
          requestCert: true,
          // The chain is checked here (socket.authorized) so that a refusal is a counted,
          // logged CONNACK with a code rather than an anonymous handshake failure.
          rejectUnauthorized: false,
          minVersion: 'TLSv1.2',
          noDelay: true,
        },
        aedes.handle,
      )
    : undefined;
  tlsServer?.on('tlsClientError', (err) => log.debug({ err: err.message }, 'tls handshake failed'));
  // Both 'listening' waits are set up before either listen, so neither event can be missed.
  const listening = Promise.all([once(server, 'listening'), tlsServer ? once(tlsServer, 'listening') : null]);
  server.listen(opts.port, opts.host);
  tlsServer?.listen(opts.tls!.port, opts.tls!.host);
  try {
    await listening;
  } catch (e) {
    server.close();
    tlsServer?.close();
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
  const tlsAddr = tlsServer?.address();
  const tlsPort = tlsAddr && typeof tlsAddr === 'object' ? tlsAddr.port : undefined;
  const tlsDial =
    opts.tls && (opts.tls.host === '0.0.0.0' || opts.tls.host === '::' ? '127.0.0.1' : opts.tls.host);
  if (tlsPort !== undefined)
    log.info({ port: tlsPort, host: opts.tls!.host }, 'embedded broker TLS listening');

  let closing: Promise<void> | undefined;
  return {
    url: `mqtt://${dialHost.includes(':') ? `[${dialHost}]` : dialHost}:${port}`,
    host: opts.host,
    port,
    tlsUrl:
      tlsPort !== undefined && tlsDial
        ? `mqtts://${tlsDial.includes(':') ? `[${tlsDial}]` : tlsDial}:${tlsPort}`
        : undefined,
    tlsPort,
    aedes,
    disconnectGateway(gatewayId) {
      revokedHere.add(gatewayId);
      const live = [...(byGateway.get(gatewayId) ?? [])];
      byGateway.delete(gatewayId);
      for (const c of live) c.close();
      if (live.length)
        log.warn({ gateway: gatewayId, connections: live.length }, 'gateway disconnected (revoked)');
      return live.length;
    },
    close() {
      closing ??= (async () => {
        const tlsClosed = tlsServer
          ? new Promise<void>((r) => tlsServer.close(() => r()))
          : Promise.resolve();
        const serverClosed = new Promise<void>((r) => server.close(() => r()));
        await new Promise<void>((r) => aedes.close(() => r()));
        await serverClosed;
        await tlsClosed;
      })();
      return closing;
    },
  };
}

/**
 * The certificate path [FLEET-CERT-1]: undefined when the client presented no
 * certificate (the caller decides whether the password path is open); otherwise a verdict.
 */
async function identifyByCertificate(
  socket: TLSSocket,
  username: string,
  tls: EmbeddedBrokerTls,
): Promise<Verdict | undefined> {
  const peer = socket.getPeerCertificate();
  if (!peer || Object.keys(peer).length === 0) return undefined;
  const refused = (reason: string, detail: string) => deny(reason, 'CLOUD_ERR_CERT_REFUSED', detail);
  if (!socket.authorized) {
    return refused('cert_untrusted', String(socket.authorizationError ?? 'not signed by the cloud CA'));
  }
  const id = gatewayIdOfPeer(peer);
  if (!id || !isValidId(id)) return refused('cert_mismatch', 'the certificate names no gateway id');
  // A username, if sent, must be the certificate's gateway: no speaking for another one.
  if (username !== '' && username !== id) {
    return refused('cert_mismatch', `username "${username}" is not the certificate's gateway "${id}"`);
  }
  const fingerprint = peer.fingerprint256.replace(/:/g, '').toLowerCase();
  const rec = await tls.certificate(fingerprint);
  if (!rec || rec.gateway !== id)
    return refused('cert_unknown', 'the cloud has no record of this certificate');
  if (rec.revokedAt !== null) return deny('revoked', 'CLOUD_ERR_GATEWAY_REVOKED');
  // [FLEET-ROTATE-1] a rotated certificate stops working at its next connect.
  if (rec.retiredReason !== null) return refused('cert_rotated', 'a newer certificate replaced it');
  return { ok: true, who: { kind: 'gateway', id: rec.gateway, site: rec.site } };
}
