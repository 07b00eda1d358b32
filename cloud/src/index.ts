import { mkdirSync } from 'node:fs';
import pino, { type Logger } from 'pino';
import { type EmbeddedBroker, startEmbeddedBroker } from './broker.ts';
import { CommandService, type SendCommandInput } from './commands/service.ts';
import {
  type CloudConfig,
  type CloudConfigInput,
  type ExternalBrokerConfig,
  resolveCloudConfig,
} from './config.ts';
import { loadOrCreateCa } from './fleet/ca.ts';
import { collectPresenceGauge } from './fleet/presence.ts';
import { SqlProvisioning } from './fleet/provisioning.ts';
import { build } from './http/app.ts';
import { IngestService } from './ingest/service.ts';
import { type CloudMetrics, createCloudMetrics } from './metrics.ts';
import { hashPassword } from './passwords.ts';
import { loadOrCreateSigningKey } from './signing-key.ts';
import { startVending } from './orders/index.ts';
import { type Members, type MembersConfig, startMembers } from './members/index.ts';
import { type Cabinets, type CabinetTiming, startCabinets } from './cabinet/index.ts';
import type { CouponRedeemer } from './members/coupons.ts';
import type { AgreementChargeClient } from './payments/provider.ts';
import { providerHttpClient } from './payments/wechat-http.ts';
import { type Prices, startPrices } from './prices/index.ts';
import { type ShadowsAndRollouts, startShadowsAndRollouts } from './fleet/shadows-wiring.ts';
import { type Alerts, type AlertsConfig, startAlerts } from './fleet/alerts-service.ts';
import {
  type PresenceHistory,
  type PresenceHistoryConfig,
  startPresenceHistory,
} from './fleet/presence-history.ts';
import { openStore, SqlCloudStore } from './store/index.ts';
import { startVisionGallery, type VisionGallery } from './vision/index.ts';
import type { CloudStore, CommandRecord } from './store/store.ts';

export { type BrokerIdentity, type EmbeddedBroker, startEmbeddedBroker } from './broker.ts';
export { CommandService, type SendCommandInput } from './commands/service.ts';
export {
  type CloudConfig,
  type CloudConfigInput,
  ENV_MAP,
  loadCloudConfig,
  resolveCloudConfig,
} from './config.ts';
export { CLOUD_ERRORS, type CloudErrorCode, cloudError } from './errors.ts';
export { build } from './http/app.ts';
export * as orders from './orders/index.ts';
export * as members from './members/index.ts';
export * as cabinet from './cabinet/index.ts';
export * as prices from './prices/index.ts';
export { IngestService } from './ingest/service.ts';
export { type CloudMetrics, createCloudMetrics } from './metrics.ts';
export { hashPassword, verifyPassword } from './passwords.ts';
export * from './store/index.ts';

export interface CloudApp {
  /** http://host:port of the API (`/api/v1`, `/docs`, `/metrics`). */
  httpUrl: string;
  /** mqtt://host:port of the broker the gateways should use. */
  brokerUrl: string;
  /** mqtts://host:port of the embedded broker's mutual TLS listener, when configured. */
  brokerTlsUrl: string | undefined;
  /** The fleet CA certificate (gateway and broker certificates chain to it). */
  caPem: string;
  /** The key gateways must trust for commands (also written to `<privateKeyFile>.pub`). */
  publicKeyPem: string;
  config: CloudConfig;
  store: CloudStore;
  metrics: CloudMetrics;
  sendCommand(input: SendCommandInput): Promise<CommandRecord>;
  /** Price book and ESL campaigns (docs/esl.md); undefined on a non-SQL store. */
  prices: Prices | undefined;
  /** Unmanned cabinet sessions (docs/cabinet.md); undefined on a non-SQL store. */
  cabinets: Cabinets | undefined;
  /** Fleet shadows and staged rollouts (docs/fleet-shadows-rollouts.md); undefined on a non-SQL store. */
  fleetShadows: ShadowsAndRollouts | undefined;
  /** Fleet alerts and webhooks (docs/fleet-alerts-dashboard.md); undefined on a non-SQL store. */
  alerts: Alerts | undefined;
  /** Presence history sweep (docs/fleet-provisioning.md); undefined on a non-SQL store. */
  presenceHistory: PresenceHistory | undefined;
  /** Face gallery: enrolment, withdrawal/erasure to every edge (docs/vision.md); undefined on a non-SQL store. */
  vision: VisionGallery | undefined;
  /** Members, profiles, rules and coupons (docs/members.md); undefined on a non-SQL store. */
  members: Members | undefined;
  /** Resolves when every uplink/state/heartbeat received so far is handled (tests). */
  idle(): Promise<void>;
  close(): Promise<void>;
}

export interface StartOptions {
  now?: () => number;
  logger?: Logger;
  /**
   * Cabinet checkout (docs/cabinet.md): agreement-capable payment clients by provider
   * name (besides the configured provider's HTTP client; none at all: every scan is
   * refused CLOUD_ERR_CAB_PROVIDER), the members' coupon redeemer (optional), sweeper
   * interval and timings.
   */
  cabinet?: {
    payments: Record<string, AgreementChargeClient>;
    coupons?: CouponRedeemer;
    sweepIntervalMs?: number;
    timing?: Partial<CabinetTiming>;
  };
  /** Alert sweep/delivery periods and threshold overrides (docs/fleet-alerts-dashboard.md). */
  alerts?: AlertsConfig;
  /** Presence history sweep/prune periods (retention: config `fleet.presenceHistoryKeep`). */
  presenceHistory?: Omit<PresenceHistoryConfig, 'keep'>;
  /** Members: coupon webhook, store displays per gateway, sweep period (docs/members.md). */
  members?: MembersConfig;
}

/**
 * Starts the cloud: store (migrated, gateways from the config seeded), signing key,
 * broker (embedded, or nothing for an external one), ingest and command services as
 * MQTT clients of that broker, then the HTTP API. `close()` stops them in reverse.
 */
export async function startCloud(
  input: CloudConfigInput | CloudConfig,
  opts: StartOptions = {},
): Promise<CloudApp> {
  const config = resolveCloudConfig(input);
  const now = opts.now ?? Date.now;
  const logger = opts.logger ?? pino({ level: config.log.level, name: 'storelink-cloud' });
  const metrics = createCloudMetrics({ defaultMetrics: true });
  const stops: (() => Promise<void>)[] = [];
  const closeAll = async () => {
    for (const stop of stops.splice(0).reverse()) {
      try {
        await stop();
      } catch (e) {
        logger.warn({ err: e }, 'error while stopping');
      }
    }
  };

  try {
    mkdirSync(config.dataDir, { recursive: true });
    const store = await openStore(config.store);
    stops.push(() => store.close());
    // Provisioning (docs/fleet-provisioning.md): revocation-aware credentials, the fleet CA.
    const fleet = store instanceof SqlCloudStore ? new SqlProvisioning(store.sql) : undefined;
    for (const g of config.gateways) {
      // [FLEET-ROTATE-3] a password rotated through the API is not reverted by the config seed.
      if (await fleet?.passwordRotated(g.id)) {
        logger.warn({ gateway: g.id }, 'config password ignored: the password was rotated through the API');
        continue;
      }
      await store.upsertGateway(
        { id: g.id, site: g.site, name: g.name ?? null, passwordHash: await hashPassword(g.password) },
        now(),
      );
    }
    const ca = await loadOrCreateCa(config.fleet.caDir, now());
    const presencePolicy = {
      heartbeatTimeoutMs: config.fleet.heartbeatTimeoutMs,
      stallAfterMs: config.fleet.stallAfterMs,
    };
    if (fleet) {
      collectPresenceGauge(
        metrics.fleetGateways,
        () => fleet.presenceRows(),
        presencePolicy,
        now,
        (e) => logger.warn({ err: (e as Error).message }, 'fleet presence gauge not updated'),
      );
    }
    const key = loadOrCreateSigningKey(config.signing.privateKeyFile);
    if (key.generated)
      logger.info({ file: config.signing.privateKeyFile }, 'generated a new command signing key');

    let broker: EmbeddedBroker | undefined;
    let serviceBroker: { url: string; username?: string; password?: string };
    if (config.broker.mode === 'embedded') {
      broker = await startEmbeddedBroker({
        host: config.broker.host,
        port: config.broker.port,
        service: config.service,
        credentials: (id) => (fleet ? fleet.credentials(id) : store.getGatewayCredentials(id)),
        ...(config.broker.tls && fleet
          ? {
              tls: {
                host: config.broker.tls.host,
                port: config.broker.tls.port,
                requireClientCert: config.broker.tls.requireClientCert,
                caPem: ca.caCertPem,
                ...(await ca.serverCertificate(config.broker.tls.hosts, now())),
                certificate: (fingerprint: string) => fleet.certificate(fingerprint),
              },
            }
          : {}),
        metrics,
        logger,
      });
      stops.push(() => broker!.close());
      serviceBroker = {
        url: broker.url,
        username: config.service.username,
        password: config.service.password,
      };
    } else {
      serviceBroker = {
        url: config.broker.url,
        ...(config.broker.username !== undefined ? { username: config.broker.username } : {}),
        ...(config.broker.password !== undefined ? { password: config.broker.password } : {}),
      };
    }

    const ingest = await IngestService.start({ broker: serviceBroker, store, metrics, logger, now });
    stops.push(() => ingest.close());
    const commands = await CommandService.start({
      broker: serviceBroker,
      store,
      privateKey: key.privateKey,
      defaultTtlMs: config.commands.defaultTtlMs,
      metrics,
      logger,
      now,
    });
    stops.push(() => commands.close());
    ingest.onGatewayOnline((gateway) => {
      commands.redeliverOpen(gateway).catch((e: unknown) => {
        logger.warn({ gateway, err: (e as Error).message }, 'command redelivery failed');
      });
    });
    const sendCommand = (c: SendCommandInput) => commands.send(c);
    // The provider's merchant API (docs/vending.md "Provider adapter"): query, close, refund, deduct.
    const payClient = providerHttpClient(config.payments, now, metrics);
    // Members and coupons (docs/members.md): recognitions in the ingest transaction, coupons on orders.
    const members =
      store instanceof SqlCloudStore
        ? startMembers({
            store,
            sendCommand,
            registry: metrics.registry,
            logger,
            now,
            ...(opts.members ? { config: opts.members } : {}),
          })
        : undefined;
    if (members) stops.push(() => members.close());
    // Vending orders/payments (docs/vending.md): needs the SQL store for its ingest hook.
    const vending =
      store instanceof SqlCloudStore
        ? startVending({
            store,
            config: config.payments,
            sendCommand,
            commands,
            ...(payClient ? { clients: { [payClient.name]: payClient.client } } : {}),
            registry: metrics.registry,
            logger,
            now,
            ...(members ? { coupons: members.service, onPaid: members.onPaid } : {}),
          })
        : undefined;
    if (vending) stops.push(() => vending.close());
    // Face gallery (docs/vision.md): consenting members' embeddings, sealed per gateway.
    const vision =
      store instanceof SqlCloudStore
        ? startVisionGallery({ store, dataDir: config.dataDir, sendCommand, now, logger })
        : undefined;
    // [MEMBER-ERASE-2] erasing a member withdraws their face-gallery entries on every edge.
    if (vision && members) vision.gallery.subscribeErasures(members.service);
    // Price book and ESL campaigns (docs/esl.md): also an ingest hook on the SQL store.
    const prices =
      store instanceof SqlCloudStore ? startPrices({ store, sendCommand, now, logger }) : undefined;
    if (prices) stops.push(() => prices.close());
    // Cabinet sessions (docs/cabinet.md): ingest hook applies session events, charges after commit.
    const cabinets =
      store instanceof SqlCloudStore
        ? startCabinets({
            store,
            sendCommand,
            payments: {
              ...(payClient ? { [payClient.name]: payClient.client } : {}),
              ...opts.cabinet?.payments,
            },
            ...((opts.cabinet?.coupons ?? members?.service)
              ? { coupons: opts.cabinet?.coupons ?? members!.service }
              : {}),
            ...(opts.cabinet?.sweepIntervalMs !== undefined
              ? { sweepIntervalMs: opts.cabinet.sweepIntervalMs }
              : {}),
            ...(opts.cabinet?.timing ? { timing: opts.cabinet.timing } : {}),
            registry: metrics.registry,
            logger,
            now,
          })
        : undefined;
    if (cabinets) stops.push(() => cabinets.close());
    // Shadows and rollouts (docs/fleet-shadows-rollouts.md): ingest hook + birth reconcile + engine tick.
    const fleetShadows =
      store instanceof SqlCloudStore
        ? startShadowsAndRollouts({ store, sendCommand, now, logger, metrics })
        : undefined;
    if (fleetShadows) {
      stops.push(() => fleetShadows.close());
      ingest.onGatewayOnline((gateway) => fleetShadows.gatewayOnline(gateway));
    }
    // Fleet alerts (docs/fleet-alerts-dashboard.md): ingest hook + sweep + webhook outbox.
    const alerts =
      store instanceof SqlCloudStore
        ? await startAlerts({ store, metrics, now, logger, config: alertsConfig(config, opts.alerts) })
        : undefined;
    if (alerts) stops.push(() => alerts.close());
    // Presence history (docs/fleet-provisioning.md): the judged transitions and the pruning.
    const presenceHistory =
      store instanceof SqlCloudStore
        ? startPresenceHistory({
            sql: store.sql,
            policy: presencePolicy,
            now,
            logger,
            config: { ...opts.presenceHistory, keep: config.fleet.presenceHistoryKeep },
          })
        : undefined;
    if (presenceHistory) stops.push(() => presenceHistory.close());

    const app = await build({
      context: {
        store,
        sendCommand,
        metrics,
        hashPassword: (p) => hashPassword(p),
        readiness: async () => ({ ingest: ingest.connected, commands: commands.connected }),
        now,
      },
      logger,
      ...(vending
        ? {
            vending: {
              orders: vending.service,
              siteOf: async (id: string) => (await store.getGateway(id))?.site,
            },
          }
        : {}),
      ...(prices ? { prices: { book: prices.book } } : {}),
      ...(cabinets ? { cabinet: { cabinet: cabinets.service } } : {}),
      ...(vision ? { vision: { gallery: vision.gallery, masterKey: vision.masterKey } } : {}),
      ...(fleetShadows
        ? { fleetShadows: { shadows: fleetShadows.shadows, rollouts: fleetShadows.rollouts } }
        : {}),
      ...(fleet
        ? {
            provisioning: {
              repo: fleet,
              ca,
              disconnect: (id: string) => broker?.disconnectGateway(id) ?? 0,
              presence: presencePolicy,
              certValidityDays: config.fleet.certValidityDays,
              brokerUrl: broker ? broker.url : (config.broker as ExternalBrokerConfig).url,
              tlsUrl: broker?.tlsUrl,
            },
          }
        : {}),
      ...(alerts ? { alerts: { alerts } } : {}),
      ...(store instanceof SqlCloudStore ? { presenceHistory: { sql: store.sql } } : {}),
      ...(members ? { members: { members: members.service } } : {}),
      dashboard:
        prices && store instanceof SqlCloudStore ? { prices: { book: prices.book, sql: store.sql } } : {},
    });
    stops.push(() => app.close());
    await app.listen({ host: config.http.host, port: config.http.port });
    const addr = app.server.address();
    const port = typeof addr === 'object' && addr ? addr.port : config.http.port;
    const host = config.http.host === '0.0.0.0' || config.http.host === '::' ? '127.0.0.1' : config.http.host;
    const httpUrl = `http://${host.includes(':') ? `[${host}]` : host}:${port}`;
    const brokerUrl = broker ? broker.url : (config.broker as ExternalBrokerConfig).url;
    logger.info({ httpUrl, brokerUrl }, 'storelink cloud started');

    let closing: Promise<void> | undefined;
    return {
      httpUrl,
      brokerUrl,
      brokerTlsUrl: broker?.tlsUrl,
      caPem: ca.caCertPem,
      publicKeyPem: key.publicKeyPem,
      config,
      store,
      metrics,
      sendCommand,
      prices,
      cabinets,
      vision: vision?.gallery,
      fleetShadows,
      alerts,
      presenceHistory,
      members,
      idle: () => ingest.idle(),
      close() {
        closing ??= closeAll().then(() => logger.info('storelink cloud stopped'));
        return closing;
      },
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/**
 * [ALERT-CONFIG-1] The config file's `alerts` section (and STORELINK_CLOUD_ALERTS_*) under
 * the `startCloud` options: thresholds field by field, then stored at start over what the
 * store held (docs/fleet-alerts-dashboard.md "Configuration").
 */
export function alertsConfig(config: CloudConfig, opt: AlertsConfig | undefined): AlertsConfig {
  const thresholds = { ...config.alerts.thresholds, ...opt?.thresholds };
  return {
    ...(config.alerts.sweepIntervalMs !== undefined
      ? { sweepIntervalMs: config.alerts.sweepIntervalMs }
      : {}),
    ...opt,
    thresholds,
  };
}
