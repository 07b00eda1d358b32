import { type Static, Type } from '@sinclair/typebox';
import { ID_PATTERN } from '@storelink/protocols';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { cloudError } from '../errors.ts';
import { errorResponses, GatewayParams, Items } from '../http/schemas.ts';
import type { CertificateAuthority } from './ca.ts';
import { derivePresence, type PresencePolicy } from './presence.ts';
import { generateSecret, hashEdgeDevicePassword, type SqlProvisioning } from './provisioning.ts';

/**
 * Provisioning and presence endpoints (docs/fleet-provisioning.md), under /api/v1:
 *
 *   POST   /gateways/:id/provision     register a gateway + devices (+ certificate), one bundle
 *   POST   /gateways/:id/devices       register / re-key devices (passwords returned once)
 *   DELETE /gateways/:id/devices/:device
 *   GET    /gateways/:id/edge-devices  the edge's `devices` config (hashes only)
 *   POST   /gateways/:id/certificate   issue or rotate the gateway's certificate
 *   GET    /gateways/:id/certificates
 *   POST   /gateways/:id/password      rotate the MQTT password
 *   POST   /gateways/:id/revoke        revoke now: refused on every path, live connections dropped
 *   GET    /gateways/:id/presence      judged presence + devices
 *   GET    /fleet/presence             judged presence of every gateway
 *   GET    /fleet/ca                   the CA certificate gateways must trust
 *
 * Secrets (passwords, generated private keys) are in the response once and never stored
 * in clear [FLEET-SECRET-1].
 */

export interface ProvisioningRoutesOptions {
  repo: SqlProvisioning;
  ca: CertificateAuthority;
  /** Drops the gateway's live broker connections; 0 when the broker is not ours. */
  disconnect: (gatewayId: string) => number;
  presence: PresencePolicy;
  certValidityDays: number;
  /** Where the gateway should connect: the bundle's edge config uses the TLS URL when there is one. */
  brokerUrl: string;
  tlsUrl?: string | undefined;
}

const Id = Type.String({ pattern: ID_PATTERN });
const Secret = Type.String({ minLength: 12, maxLength: 1024 });
const DeviceIn = Type.Object(
  { id: Id, kind: Type.Optional(Type.String({ maxLength: 64 })), password: Type.Optional(Secret) },
  { additionalProperties: false },
);
const DeviceOut = Type.Object({
  id: Type.String(),
  kind: Type.Union([Type.String(), Type.Null()]),
  password: Type.String(),
});
const CertIn = Type.Object(
  {
    /** PKCS#10 request from the gateway (its key never leaves it); absent = the CA makes a key. */
    csrPem: Type.Optional(Type.String({ minLength: 1, maxLength: 16_384 })),
    validityDays: Type.Optional(Type.Integer({ minimum: 1, maximum: 3650 })),
  },
  { additionalProperties: false },
);
const CertOut = Type.Object({
  certPem: Type.String(),
  keyPem: Type.Optional(Type.String()),
  caPem: Type.String(),
  serial: Type.String(),
  fingerprint: Type.String(),
  notBefore: Type.Integer(),
  notAfter: Type.Integer(),
});
const ProvisionBody = Type.Object(
  {
    site: Id,
    name: Type.Optional(Type.String({ maxLength: 128 })),
    password: Type.Optional(Secret),
    devices: Type.Optional(Type.Array(DeviceIn, { maxItems: 1000 })),
    certificate: Type.Optional(CertIn),
  },
  { additionalProperties: false },
);
const EdgeDevice = Type.Object({
  id: Type.String(),
  kind: Type.Optional(Type.String()),
  passwordHash: Type.String(),
});
const ProvisionOut = Type.Object({
  gateway: Type.Object({
    id: Type.String(),
    site: Type.String(),
    name: Type.Union([Type.String(), Type.Null()]),
  }),
  password: Type.String(),
  devices: Type.Array(DeviceOut),
  certificate: Type.Optional(CertOut),
  /** A ready edge config fragment: `cloud` connection and `devices`. */
  edge: Type.Object({
    site: Type.String(),
    gateway: Type.String(),
    cloud: Type.Object({
      url: Type.String(),
      username: Type.String(),
      password: Type.String(),
      caPem: Type.Optional(Type.String()),
      certPem: Type.Optional(Type.String()),
      keyPem: Type.Optional(Type.String()),
    }),
    devices: Type.Array(EdgeDevice),
  }),
});
const Presence = Type.Object({
  gateway: Type.String(),
  site: Type.String(),
  name: Type.Union([Type.String(), Type.Null()]),
  state: Type.Union(['unknown', 'online', 'stalled', 'offline', 'revoked'].map((s) => Type.Literal(s))),
  reason: Type.Union([Type.Literal('no_heartbeat'), Type.Literal('backlog_not_draining'), Type.Null()]),
  bdSeq: Type.Union([Type.Integer(), Type.Null()]),
  onlineSince: Type.Union([Type.Integer(), Type.Null()]),
  lastHeardAt: Type.Union([Type.Integer(), Type.Null()]),
  lastProgressAt: Type.Union([Type.Integer(), Type.Null()]),
  outboxDepth: Type.Union([Type.Integer(), Type.Null()]),
  oldestEventAgeMs: Type.Union([Type.Integer(), Type.Null()]),
  devicesOnline: Type.Array(Type.String()),
  revokedAt: Type.Union([Type.Integer(), Type.Null()]),
});
const DevicePresence = Type.Object({
  id: Type.String(),
  kind: Type.Union([Type.String(), Type.Null()]),
  registered: Type.Boolean(),
  /** Reported by the edge (device.online / device.offline); null: never reported. */
  online: Type.Union([Type.Boolean(), Type.Null()]),
  presenceReason: Type.Union([Type.String(), Type.Null()]),
  presenceAt: Type.Union([Type.Integer(), Type.Null()]),
  lastSeen: Type.Union([Type.Integer(), Type.Null()]),
});
const CertRecord = Type.Object({
  fingerprint: Type.String(),
  serial: Type.String(),
  notBefore: Type.Integer(),
  notAfter: Type.Integer(),
  issuedAt: Type.Integer(),
  retiredAt: Type.Union([Type.Integer(), Type.Null()]),
  retiredReason: Type.Union([Type.Literal('rotated'), Type.Literal('revoked'), Type.Null()]),
});
const DeviceParams = Type.Object({ id: Id, device: Id });
const PresenceQuery = Type.Object(
  {
    state: Type.Optional(
      Type.Union(['unknown', 'online', 'stalled', 'offline', 'revoked'].map((s) => Type.Literal(s))),
    ),
  },
  { additionalProperties: false },
);

type Params = Static<typeof GatewayParams>;
type DeviceInput = Static<typeof DeviceIn>;

async function provisioningRoutes(app: FastifyInstance, o: ProvisioningRoutesOptions) {
  const { store, hashPassword, now } = app.cloud;
  const { repo, ca } = o;

  /** Hashes (generating where absent) device passwords; returns clear ones once. */
  const prepareDevices = async (devices: readonly DeviceInput[]) => {
    const seen = new Set<string>();
    const out: { id: string; kind: string | null; password: string; passwordHash: string }[] = [];
    for (const d of devices) {
      if (seen.has(d.id)) {
        throw cloudError('CLOUD_ERR_BAD_REQUEST', { errors: `devices: "${d.id}" is listed twice` });
      }
      seen.add(d.id);
      const password = d.password ?? generateSecret();
      out.push({
        id: d.id,
        kind: d.kind ?? null,
        password,
        passwordHash: await hashEdgeDevicePassword(password),
      });
    }
    return out;
  };

  const issue = async (gateway: string, site: string, body: Static<typeof CertIn>) => {
    const cert = await ca.issueGatewayCertificate(gateway, site, {
      now: now(),
      validityDays: body.validityDays ?? o.certValidityDays,
      ...(body.csrPem !== undefined ? { csrPem: body.csrPem } : {}),
    });
    await repo.recordCertificate(gateway, cert, now());
    return { ...cert, caPem: ca.caCertPem };
  };

  const edgeDevices = (devs: readonly { id: string; kind: string | null; passwordHash: string }[]) =>
    devs.map((d) => ({
      id: d.id,
      ...(d.kind !== null ? { kind: d.kind } : {}),
      passwordHash: d.passwordHash,
    }));

  app.post<{ Params: Params; Body: Static<typeof ProvisionBody> }>(
    '/gateways/:id/provision',
    {
      schema: {
        tags: ['provisioning'],
        summary: 'Register a gateway with its devices (and a certificate): the one-time bundle',
        params: GatewayParams,
        body: ProvisionBody,
        response: { 201: ProvisionOut, ...errorResponses },
      },
    },
    async (req, reply) => {
      const { id } = req.params;
      const b = req.body;
      const password = b.password ?? generateSecret();
      const devices = await prepareDevices(b.devices ?? []);
      const g = await store.createGateway(
        { id, site: b.site, name: b.name ?? null, passwordHash: await hashPassword(password) },
        now(),
      );
      if (devices.length) await repo.upsertDevices(id, devices, now());
      const certificate = b.certificate ? await issue(id, g.site, b.certificate) : undefined;
      const url = certificate && o.tlsUrl ? o.tlsUrl : o.brokerUrl;
      return reply.code(201).send({
        gateway: { id: g.id, site: g.site, name: g.name },
        password,
        devices: devices.map(({ id: d, kind, password: p }) => ({ id: d, kind, password: p })),
        ...(certificate ? { certificate } : {}),
        edge: {
          site: g.site,
          gateway: g.id,
          cloud: {
            url,
            username: g.id,
            password,
            ...(certificate
              ? {
                  caPem: certificate.caPem,
                  certPem: certificate.certPem,
                  ...(certificate.keyPem ? { keyPem: certificate.keyPem } : {}),
                }
              : {}),
          },
          devices: edgeDevices(devices),
        },
      });
    },
  );

  app.post<{ Params: Params; Body: { devices: DeviceInput[] } }>(
    '/gateways/:id/devices',
    {
      schema: {
        tags: ['provisioning'],
        summary: 'Register or re-key devices behind a gateway (passwords returned once)',
        params: GatewayParams,
        body: Type.Object(
          { devices: Type.Array(DeviceIn, { minItems: 1, maxItems: 1000 }) },
          { additionalProperties: false },
        ),
        response: { 200: Items(DeviceOut), ...errorResponses },
      },
    },
    async (req) => {
      await repo.mustExist(req.params.id, { live: true });
      const devices = await prepareDevices(req.body.devices);
      await repo.upsertDevices(req.params.id, devices, now());
      return { items: devices.map(({ id, kind, password }) => ({ id, kind, password })) };
    },
  );

  app.delete<{ Params: Static<typeof DeviceParams> }>(
    '/gateways/:id/devices/:device',
    {
      schema: {
        tags: ['provisioning'],
        summary: 'Unregister a device',
        params: DeviceParams,
        response: { 204: Type.Null(), ...errorResponses },
      },
    },
    async (req, reply) => {
      await repo.mustExist(req.params.id, { live: false });
      if (!(await repo.removeDevice(req.params.id, req.params.device))) {
        throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'device', id: req.params.device });
      }
      return reply.code(204).send();
    },
  );

  app.get<{ Params: Params }>(
    '/gateways/:id/edge-devices',
    {
      schema: {
        tags: ['provisioning'],
        summary: "The edge's `devices` config for this gateway (STORELINK_EDGE_DEVICES), hashes only",
        params: GatewayParams,
        response: { 200: Items(EdgeDevice), ...errorResponses },
      },
    },
    async (req) => {
      await repo.mustExist(req.params.id, { live: false });
      return { items: edgeDevices(await repo.registeredDevices(req.params.id)) };
    },
  );

  app.post<{ Params: Params; Body: Static<typeof CertIn> }>(
    '/gateways/:id/certificate',
    {
      schema: {
        tags: ['provisioning'],
        summary: 'Issue the gateway a client certificate; earlier ones stop working at their next connect',
        params: GatewayParams,
        body: CertIn,
        response: { 201: CertOut, ...errorResponses },
      },
    },
    async (req, reply) => {
      const g = await repo.mustExist(req.params.id, { live: true });
      return reply.code(201).send(await issue(g.id, g.site, req.body ?? {}));
    },
  );

  app.get<{ Params: Params }>(
    '/gateways/:id/certificates',
    {
      schema: {
        tags: ['provisioning'],
        summary: "The gateway's certificates, newest first (current: retiredAt null)",
        params: GatewayParams,
        response: { 200: Items(CertRecord), ...errorResponses },
      },
    },
    async (req) => {
      await repo.mustExist(req.params.id, { live: false });
      return { items: await repo.listCertificates(req.params.id) };
    },
  );

  app.post<{ Params: Params; Body: { password?: string } }>(
    '/gateways/:id/password',
    {
      schema: {
        tags: ['provisioning'],
        summary: 'Rotate the MQTT password; the old one fails at its next connect',
        params: GatewayParams,
        body: Type.Object({ password: Type.Optional(Secret) }, { additionalProperties: false }),
        response: { 200: Type.Object({ password: Type.String() }), ...errorResponses },
      },
    },
    async (req) => {
      const g = await repo.mustExist(req.params.id, { live: true });
      const password = req.body?.password ?? generateSecret();
      await repo.rotatePassword(g.id, await hashPassword(password), now());
      return { password };
    },
  );

  app.post<{ Params: Params; Body: { reason: string } }>(
    '/gateways/:id/revoke',
    {
      schema: {
        tags: ['provisioning'],
        summary: 'Revoke the gateway now: refused on every path, live connections dropped',
        params: GatewayParams,
        body: Type.Object(
          { reason: Type.String({ minLength: 1, maxLength: 512 }) },
          { additionalProperties: false },
        ),
        response: {
          200: Type.Object({
            gateway: Type.String(),
            revokedAt: Type.Integer(),
            disconnected: Type.Integer(),
          }),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const revokedAt = await repo.revoke(req.params.id, req.body.reason, now());
      // [FLEET-REVOKE-1] committed first, then the live connections go: a reconnect is refused.
      const disconnected = o.disconnect(req.params.id);
      req.log.warn({ gateway: req.params.id, reason: req.body.reason, disconnected }, 'gateway revoked');
      return { gateway: req.params.id, revokedAt, disconnected };
    },
  );

  app.get<{ Params: Params }>(
    '/gateways/:id/presence',
    {
      schema: {
        tags: ['presence'],
        summary: 'Judged presence (online / stalled / offline / revoked) and the devices behind it',
        params: GatewayParams,
        response: {
          200: Type.Intersect([Presence, Type.Object({ devices: Type.Array(DevicePresence) })]),
          ...errorResponses,
        },
      },
    },
    async (req) => {
      const [row] = await repo.presenceRows(req.params.id);
      if (!row) throw cloudError('CLOUD_ERR_NOT_FOUND', { what: 'gateway', id: req.params.id });
      return { ...derivePresence(row, o.presence, now()), devices: await repo.devicePresence(row.id) };
    },
  );

  app.get<{ Querystring: Static<typeof PresenceQuery> }>(
    '/fleet/presence',
    {
      schema: {
        tags: ['presence'],
        summary: 'Judged presence of every gateway',
        querystring: PresenceQuery,
        response: { 200: Items(Presence), ...errorResponses },
      },
    },
    async (req) => {
      const t = now();
      const items = (await repo.presenceRows()).map((r) => derivePresence(r, o.presence, t));
      return { items: req.query.state ? items.filter((p) => p.state === req.query.state) : items };
    },
  );

  app.get(
    '/fleet/ca',
    {
      schema: {
        tags: ['provisioning'],
        summary: 'The CA certificate the broker and gateway certificates chain to',
        response: { 200: Type.Object({ caPem: Type.String() }) },
      },
    },
    async () => ({ caPem: ca.caCertPem }),
  );
}

export default fp(provisioningRoutes, {
  name: 'storelink-provisioning-routes',
  dependencies: ['storelink-context'],
  encapsulate: true,
});
