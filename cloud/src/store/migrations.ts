import { cloudError } from '../errors.ts';
import type { Sql } from './sql.ts';

/**
 * The one migration set for PGlite and PostgreSQL. Append only: a released migration is
 * never edited, a change is a new entry. Each runs in its own transaction together with
 * its `schema_migrations` row, under an advisory lock so two processes starting on the
 * same database cannot both apply it.
 *
 * Conventions: times are `bigint` milliseconds since the Unix epoch, as on the wire
 * (no conversion on the hot ingest path); epochs are ULIDs compared with COLLATE "C" so
 * that text order is creation order whatever the database locale.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
CREATE TABLE gateways (
  id            text PRIMARY KEY,
  site          text NOT NULL,
  name          text,
  -- scrypt$N$r$p$salt$hash; NULL for a gateway known only from traffic through an external broker
  password_hash text,
  created_at    bigint NOT NULL
);

CREATE TABLE gateway_presence (
  gateway        text PRIMARY KEY REFERENCES gateways (id) ON DELETE CASCADE,
  state          text NOT NULL DEFAULT 'unknown' CHECK (state IN ('unknown', 'online', 'offline')),
  -- [PRESENCE-BDSEQ-1] bdSeq of the session the state belongs to
  bd_seq         bigint,
  epoch          text COLLATE "C",
  version        text,
  online_since   bigint,
  state_at       bigint,
  last_seen      bigint,
  last_heartbeat jsonb,
  updated_at     bigint NOT NULL
);

CREATE TABLE devices (
  gateway         text NOT NULL,
  id              text NOT NULL,
  -- NULL until a device.online / device.offline event was seen
  online          boolean,
  -- position of the presence event applied last: an older one arriving late is not applied
  presence_epoch  text COLLATE "C",
  presence_seq    bigint,
  presence_reason text,
  presence_at     bigint,
  first_seen      bigint NOT NULL,
  last_seen       bigint NOT NULL,
  last_event_type text NOT NULL,
  PRIMARY KEY (gateway, id)
);

CREATE TABLE events (
  gateway     text NOT NULL,
  epoch       text COLLATE "C" NOT NULL,
  lane        text NOT NULL,
  seq         bigint NOT NULL,
  id          text NOT NULL,
  type        text NOT NULL,
  device      text NOT NULL,
  site        text NOT NULL,
  ts          bigint NOT NULL,
  rts         bigint NOT NULL,
  mid         text,
  payload     jsonb,
  received_at bigint NOT NULL,
  -- [INGEST-EXACTLY-ONCE-1] the dedupe key: a resent event is a conflict, never a second row
  PRIMARY KEY (gateway, epoch, lane, seq)
);
-- The one secondary index ("recent events", newest first, filters applied on the way):
-- every index costs on the hot insert path, so per-device or per-type indexes are left
-- out until a query needs them.
CREATE INDEX events_received ON events (received_at);

CREATE TABLE lane_watermarks (
  gateway    text NOT NULL,
  epoch      text COLLATE "C" NOT NULL,
  lane       text NOT NULL,
  -- [OUTBOX-ACK-2] every seq <= acked is committed (or recorded as a gap)
  acked      bigint NOT NULL DEFAULT 0 CHECK (acked >= 0),
  updated_at bigint NOT NULL,
  PRIMARY KEY (gateway, epoch, lane)
);

CREATE TABLE gaps (
  gateway  text NOT NULL,
  epoch    text COLLATE "C" NOT NULL,
  lane     text NOT NULL,
  from_seq bigint NOT NULL,
  to_seq   bigint NOT NULL CHECK (to_seq >= from_seq),
  reason   text NOT NULL CHECK (reason IN ('dropped_at_edge')),
  at       bigint NOT NULL,
  PRIMARY KEY (gateway, epoch, lane, from_seq)
);

CREATE TABLE commands (
  id                 text PRIMARY KEY,
  gateway            text NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
  site               text NOT NULL,
  device             text,
  type               text NOT NULL,
  payload            jsonb,
  issued_at          bigint NOT NULL,
  expires_at         bigint NOT NULL,
  sig                text NOT NULL,
  status             text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'sent', 'ok', 'error', 'rejected', 'timeout')),
  result             jsonb,
  code               text,
  message            text,
  sent_at            bigint,
  -- edge clock: when the edge finished it
  completed_at       bigint,
  -- cloud clock: when the result was committed here; round trip = this - issued_at
  result_received_at bigint,
  duplicate_result   boolean
);
CREATE INDEX commands_gateway ON commands (gateway, issued_at DESC);
`,
  },
  {
    version: 2,
    name: 'vending orders, payment notifications, refunds',
    sql: `
-- docs/vending.md: one row per order (out_trade_no), moved by cloud/src/orders/machine.ts
CREATE TABLE orders (
  id                  text PRIMARY KEY,
  gateway             text NOT NULL,
  site                text NOT NULL,
  slot                integer NOT NULL,
  sku                 text,
  amount_cents        bigint NOT NULL CHECK (amount_cents >= 0),
  currency            text NOT NULL,
  state               text NOT NULL CHECK (state IN
                      ('created', 'paid', 'dispensing', 'dispensed', 'failed', 'refunding', 'refunded', 'expired')),
  provider            text,
  payment_tx_id       text,
  -- [ORDER-REFUND-NO-1] fixed at creation, never updated
  refund_no           text NOT NULL UNIQUE,
  dispense_command_id text UNIQUE,
  dispense_expires_at bigint,
  created_at          bigint NOT NULL,
  expires_at          bigint NOT NULL,
  paid_at             bigint,
  settled_at          bigint,
  failure_reason      text,
  refund_attempts     integer NOT NULL DEFAULT 0,
  due_at              bigint,
  updated_at          bigint NOT NULL
);
CREATE INDEX orders_gateway ON orders (gateway, created_at DESC);
CREATE INDEX orders_due ON orders (due_at) WHERE due_at IS NOT NULL;

-- [PAY-NOTIFY-ONCE-1] the provider's transaction id is the idempotency key of a notification
CREATE TABLE payment_notifications (
  provider     text NOT NULL,
  tx_id        text NOT NULL,
  order_id     text NOT NULL,
  amount_cents bigint NOT NULL,
  currency     text NOT NULL,
  source       text NOT NULL CHECK (source IN ('notify', 'query', 'close')),
  outcome      text NOT NULL,
  received_at  bigint NOT NULL,
  PRIMARY KEY (provider, tx_id)
);
CREATE INDEX payment_notifications_order ON payment_notifications (order_id);

CREATE TABLE refunds (
  refund_no    text PRIMARY KEY,
  order_id     text NOT NULL UNIQUE,
  amount_cents bigint NOT NULL,
  status       text NOT NULL CHECK (status IN ('pending', 'succeeded')),
  attempts     integer NOT NULL DEFAULT 0,
  last_error   text,
  created_at   bigint NOT NULL,
  completed_at bigint
);
`,
  },
  {
    // Price book and ESL campaigns (cloud/src/prices, docs/esl.md).
    version: 5,
    name: 'esl price book and campaigns',
    sql: `
CREATE TABLE price_skus (
  sku        text PRIMARY KEY,
  name       text NOT NULL,
  barcode    text,
  updated_at bigint NOT NULL
);
CREATE TABLE price_prices (
  site        text NOT NULL,
  sku         text NOT NULL,
  price_cents bigint NOT NULL,
  currency    text NOT NULL,
  updated_at  bigint NOT NULL,
  PRIMARY KEY (site, sku)
);
CREATE TABLE price_promotions (
  id          text PRIMARY KEY,
  site        text NOT NULL,
  sku         text NOT NULL,
  promo_cents bigint NOT NULL,
  starts_at   bigint NOT NULL,
  ends_at     bigint NOT NULL,
  -- set when the start / end campaign was issued (the scheduler does each once)
  started_campaign text,
  ended_campaign   text,
  created_at  bigint NOT NULL
);
CREATE INDEX price_promotions_site_sku ON price_promotions (site, sku);
CREATE TABLE price_templates (
  size       text PRIMARY KEY,
  code       text NOT NULL CHECK (code IN ('barcode', 'qr', 'none')),
  updated_at bigint NOT NULL
);
CREATE TABLE esl_tags (
  mac          text PRIMARY KEY,
  kind         text NOT NULL DEFAULT 'tag' CHECK (kind IN ('tag', 'display')),
  site         text NOT NULL,
  gateway      text NOT NULL,
  ap           text,
  sku          text NOT NULL,
  size         text NOT NULL,
  bpp          integer NOT NULL,
  battery_mv   integer,
  temperature  integer,
  rssi         integer,
  last_checkin bigint,
  low_battery  boolean NOT NULL DEFAULT false,
  silent       boolean NOT NULL DEFAULT false,
  updated_at   bigint NOT NULL
);
CREATE INDEX esl_tags_site_sku ON esl_tags (site, sku);
CREATE TABLE price_campaigns (
  id           text PRIMARY KEY,
  site         text NOT NULL,
  reason       text NOT NULL,
  total        integer NOT NULL,
  created_at   bigint NOT NULL,
  deadline_at  bigint NOT NULL,
  cancelled_at bigint
);
CREATE TABLE price_campaign_tags (
  campaign_id  text NOT NULL,
  tag          text NOT NULL,
  gateway      text NOT NULL,
  sku          text NOT NULL,
  state        text NOT NULL CHECK (state IN ('sent', 'pushed', 'confirmed', 'failed', 'superseded', 'cancelled')),
  reason       text,
  data_ver     text,
  updated_at   bigint NOT NULL,
  confirmed_at bigint,
  PRIMARY KEY (campaign_id, tag)
);
CREATE INDEX price_campaign_tags_tag ON price_campaign_tags (tag, state);
`,
  },
  {
    // Fleet alerts (cloud/src/fleet/alerts*.ts, docs/fleet-alerts-dashboard.md): one row per
    // raised alert; at most one active row per (kind, gateway, subject) [ALERT-DEDUPE-1].
    version: 66,
    name: 'fleet alerts',
    sql: `
CREATE TABLE fleet_alerts (
  id           text PRIMARY KEY,
  kind         text NOT NULL,
  gateway      text NOT NULL,
  site         text NOT NULL,
  subject      text NOT NULL DEFAULT '',
  state        text NOT NULL CHECK (state IN ('active', 'cleared')),
  severity     text NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
  message      text NOT NULL,
  value        double precision,
  raised_at    bigint NOT NULL,
  last_seen_at bigint NOT NULL,
  occurrences  integer NOT NULL DEFAULT 1,
  cleared_at   bigint,
  clear_reason text
);
CREATE UNIQUE INDEX fleet_alerts_one_active ON fleet_alerts (kind, gateway, subject) WHERE state = 'active';
CREATE INDEX fleet_alerts_gateway ON fleet_alerts (gateway, raised_at);
CREATE INDEX fleet_alerts_state ON fleet_alerts (state, raised_at);
CREATE TABLE fleet_alert_conditions (
  kind       text NOT NULL,
  gateway    text NOT NULL,
  subject    text NOT NULL,
  site       text NOT NULL,
  since      bigint,
  count      integer NOT NULL DEFAULT 0,
  updated_at bigint NOT NULL,
  PRIMARY KEY (kind, gateway, subject)
);
CREATE TABLE fleet_alert_settings (
  id         integer PRIMARY KEY CHECK (id = 1),
  thresholds jsonb NOT NULL,
  updated_at bigint NOT NULL
);
`,
  },
  {
    // Alert webhooks and their delivery outbox (cloud/src/fleet/webhooks.ts) [ALERT-HOOK-1].
    version: 67,
    name: 'fleet alert webhooks',
    sql: `
CREATE TABLE fleet_webhooks (
  id         text PRIMARY KEY,
  url        text NOT NULL,
  secret     text NOT NULL,
  kinds      jsonb,
  created_at bigint NOT NULL
);
CREATE TABLE fleet_webhook_deliveries (
  id           text PRIMARY KEY,
  webhook_id   text NOT NULL REFERENCES fleet_webhooks (id) ON DELETE CASCADE,
  alert_id     text NOT NULL,
  transition   text NOT NULL CHECK (transition IN ('raised', 'cleared')),
  body         text NOT NULL,
  status       text NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
  attempts     integer NOT NULL DEFAULT 0,
  next_at      bigint NOT NULL,
  last_error   text,
  last_status  integer,
  created_at   bigint NOT NULL,
  delivered_at bigint
);
CREATE INDEX fleet_webhook_deliveries_due ON fleet_webhook_deliveries (status, next_at);
`,
  },
  {
    // Fleet provisioning (cloud/src/fleet/provisioning*.ts, docs/fleet-provisioning.md):
    // revocation, password rotation, per-gateway certificates, registered devices.
    version: 60,
    name: 'fleet provisioning: revocation, certificates, registered devices',
    sql: `
-- [FLEET-REVOKE-1] set once; a revoked gateway never authenticates again (either path)
ALTER TABLE gateways ADD COLUMN revoked_at bigint;
ALTER TABLE gateways ADD COLUMN revoked_reason text;
ALTER TABLE gateways ADD COLUMN password_rotated_at bigint;
CREATE TABLE gateway_certs (
  -- lower-case hex SHA-256 of the DER certificate: what the broker looks up [FLEET-CERT-1]
  fingerprint    text PRIMARY KEY,
  gateway        text NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
  serial         text NOT NULL,
  not_before     bigint NOT NULL,
  not_after      bigint NOT NULL,
  issued_at      bigint NOT NULL,
  -- NULL while current; set when a newer certificate replaced it or the gateway was revoked
  retired_at     bigint,
  retired_reason text CHECK (retired_reason IN ('rotated', 'revoked'))
);
CREATE INDEX gateway_certs_gateway ON gateway_certs (gateway, issued_at DESC);
CREATE TABLE gateway_devices (
  gateway       text NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
  id            text NOT NULL,
  kind          text,
  -- the edge broker's format scrypt$N$salt$hash (edge/src/broker/auth.ts) [FLEET-DEVICES-1]
  password_hash text NOT NULL,
  created_at    bigint NOT NULL,
  updated_at    bigint NOT NULL,
  PRIMARY KEY (gateway, id)
);
`,
  },
  {
    // Fleet shadows (cloud/src/fleet/shadows.ts, docs/fleet-shadows-rollouts.md).
    version: 63,
    name: 'fleet shadows',
    sql: `
CREATE TABLE fleet_shadows (
  gateway          text NOT NULL,
  -- '' for the gateway's own shadow
  device           text NOT NULL,
  desired          jsonb NOT NULL,
  -- [SHADOW-VERSION-1] grows by one per desired change
  desired_version  integer NOT NULL,
  desired_at       bigint NOT NULL,
  reported         jsonb NOT NULL,
  -- the desired version the reported document answers (0: none yet)
  reported_version integer NOT NULL DEFAULT 0,
  reported_at      bigint,
  status           text NOT NULL CHECK (status IN ('in_sync', 'pending', 'failed')),
  -- the shadow.delta command carrying desired_version
  command_id       text,
  error_code       text,
  error_message    text,
  updated_at       bigint NOT NULL,
  PRIMARY KEY (gateway, device)
);
CREATE INDEX fleet_shadows_command ON fleet_shadows (command_id);
`,
  },
  {
    // Staged rollouts and the firmware catalogue (cloud/src/fleet/rollouts.ts).
    version: 64,
    name: 'fleet rollouts',
    sql: `
CREATE TABLE fleet_firmware (
  version    text PRIMARY KEY,
  url        text NOT NULL,
  sha256     text NOT NULL,
  size       bigint NOT NULL,
  created_at bigint NOT NULL
);
CREATE TABLE fleet_rollouts (
  id                text PRIMARY KEY,
  name              text NOT NULL,
  kind              text NOT NULL CHECK (kind IN ('config', 'firmware')),
  scope             text NOT NULL CHECK (scope IN ('gateway', 'device')),
  -- config: the merge patch; firmware: the image
  change            jsonb NOT NULL,
  waves             jsonb NOT NULL,
  success_threshold double precision NOT NULL,
  error_threshold   double precision NOT NULL,
  auto_rollback     boolean NOT NULL,
  state             text NOT NULL CHECK (state IN ('running', 'awaiting_approval', 'paused', 'halted',
                      'completed', 'rolling_back', 'rolled_back', 'cancelled')),
  current_wave      integer NOT NULL,
  reason            text,
  created_at        bigint NOT NULL,
  updated_at        bigint NOT NULL
);
CREATE TABLE fleet_rollout_targets (
  rollout_id       text NOT NULL,
  gateway          text NOT NULL,
  device           text NOT NULL,
  wave             integer NOT NULL,
  state            text NOT NULL CHECK (state IN ('pending', 'sent', 'succeeded', 'failed', 'skipped',
                     'cancelled', 'rolling_back', 'rolled_back', 'rollback_failed')),
  -- the desired version this rollout set on the target's shadow
  version          integer,
  previous         jsonb,
  rollback_version integer,
  code             text,
  message          text,
  updated_at       bigint NOT NULL,
  PRIMARY KEY (rollout_id, gateway, device)
);
CREATE INDEX fleet_rollout_targets_shadow ON fleet_rollout_targets (gateway, device, state);
`,
  },
  {
    // Cabinet sessions, members' payment agreements, cabinet prices (docs/cabinet.md).
    version: 80,
    name: 'cabinet sessions',
    sql: `
CREATE TABLE cabinet_agreements (
  member_id    text PRIMARY KEY,
  provider     text NOT NULL,
  agreement_id text NOT NULL,
  active       boolean NOT NULL,
  updated_at   bigint NOT NULL
);
CREATE TABLE cabinet_prices (
  site        text NOT NULL,
  sku         text NOT NULL,
  price_cents integer NOT NULL CHECK (price_cents >= 0),
  PRIMARY KEY (site, sku)
);
CREATE TABLE cabinet_sessions (
  id              text PRIMARY KEY,
  gateway         text NOT NULL,
  site            text NOT NULL,
  member_id       text NOT NULL,
  provider        text NOT NULL,
  agreement_id    text NOT NULL,
  state           text NOT NULL CHECK (state IN ('unlocking', 'open', 'relocked', 'rejected', 'closed', 'charging', 'charged', 'review')),
  command_id      text NOT NULL UNIQUE,
  order_id        text NOT NULL UNIQUE,
  items           jsonb NOT NULL,
  returned        jsonb NOT NULL,
  unresolved      jsonb NOT NULL,
  subtotal_cents  integer NOT NULL,
  discount_cents  integer NOT NULL,
  total_cents     integer NOT NULL,
  coupon_id       text,
  priced          boolean NOT NULL,
  charge_tx_id    text,
  charge_attempts integer NOT NULL,
  failure         text,
  created_at      bigint NOT NULL,
  closed_at       bigint,
  charged_at      bigint,
  due_at          bigint,
  updated_at      bigint NOT NULL
);
CREATE INDEX cabinet_sessions_due ON cabinet_sessions (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX cabinet_sessions_gateway ON cabinet_sessions (gateway, created_at);
`,
  },
  {
    // Members and coupons (cloud/src/members, docs/members.md): identity graph (ids, links
    // kept as evidence, merges), activity the profiles are computed from, tags, versioned
    // rules, coupon templates, coupons unique per (rule, trigger) [COUPON-ONCE-1], deliveries.
    version: 70,
    name: 'members and coupons',
    sql: `
CREATE TABLE members (
  id          text PRIMARY KEY,
  created_at  bigint NOT NULL,
  merged_into text,
  erased_at   bigint
);
CREATE TABLE member_ids (
  key       text PRIMARY KEY,
  type      text NOT NULL,
  value     text NOT NULL,
  member_id text NOT NULL,
  linked_at bigint NOT NULL
);
CREATE INDEX member_ids_member ON member_ids (member_id, type);
CREATE TABLE member_links (
  a          text NOT NULL,
  b          text NOT NULL,
  source     text NOT NULL,
  evidence   jsonb NOT NULL,
  at         bigint NOT NULL,
  revoked_at bigint,
  PRIMARY KEY (a, b)
);
CREATE INDEX member_links_b ON member_links (b);
CREATE TABLE member_merges (
  id          text PRIMARY KEY,
  into_member text NOT NULL,
  from_member text NOT NULL,
  link_a      text NOT NULL,
  link_b      text NOT NULL,
  from_ids    jsonb NOT NULL,
  evidence    jsonb NOT NULL,
  at          bigint NOT NULL,
  undone_at   bigint
);
CREATE INDEX member_merges_into ON member_merges (into_member);
CREATE INDEX member_merges_from ON member_merges (from_member);
CREATE TABLE member_activity (
  key          text PRIMARY KEY,
  id_key       text NOT NULL,
  kind         text NOT NULL,
  channel      text NOT NULL,
  store        text NOT NULL,
  gateway      text,
  amount_cents bigint NOT NULL,
  at           bigint NOT NULL
);
CREATE INDEX member_activity_id ON member_activity (id_key, kind, at);
CREATE INDEX member_activity_at ON member_activity (at);
CREATE TABLE member_tags (
  member_id text NOT NULL,
  tag       text NOT NULL,
  source    text NOT NULL,
  at        bigint NOT NULL,
  PRIMARY KEY (member_id, tag)
);
CREATE TABLE member_rules (
  id         text NOT NULL,
  version    integer NOT NULL,
  body       jsonb NOT NULL,
  created_at bigint NOT NULL,
  PRIMARY KEY (id, version)
);
CREATE TABLE coupon_templates (
  id         text PRIMARY KEY,
  body       jsonb NOT NULL,
  issued     integer NOT NULL DEFAULT 0,
  created_at bigint NOT NULL
);
CREATE TABLE coupons (
  id             text PRIMARY KEY,
  template_id    text NOT NULL,
  member_id      text NOT NULL,
  rule_id        text NOT NULL,
  rule_version   integer NOT NULL,
  trigger_key    text NOT NULL,
  trigger_at     bigint NOT NULL,
  state          text NOT NULL CHECK (state IN ('issued', 'redeemed', 'expired', 'void')),
  issued_at      bigint NOT NULL,
  valid_from     bigint NOT NULL,
  expires_at     bigint NOT NULL,
  order_id       text UNIQUE,
  redeemed_at    bigint,
  discount_cents integer,
  subtotal_cents integer,
  gateway        text,
  UNIQUE (rule_id, trigger_key, template_id)
);
CREATE INDEX coupons_member ON coupons (member_id, template_id, trigger_at);
CREATE TABLE coupon_deliveries (
  coupon_id    text NOT NULL,
  channel      text NOT NULL,
  state        text NOT NULL,
  attempts     integer NOT NULL,
  last_error   text,
  next_at      bigint NOT NULL,
  delivered_at bigint,
  PRIMARY KEY (coupon_id, channel)
);
CREATE INDEX coupon_deliveries_due ON coupon_deliveries (state, next_at);
`,
  },
  {
    // On-device vision gallery (cloud/src/vision, docs/vision.md): consenting members'
    // sealed embeddings, per-gateway gallery versions, every upsert/removal sent.
    version: 90,
    name: 'vision gallery',
    sql: `
CREATE TABLE vision_members (
  member_id    text PRIMARY KEY,
  sealed       text NOT NULL,
  sites        jsonb NOT NULL,
  consent_at   bigint NOT NULL,
  consent_text text NOT NULL,
  enrolled_at  bigint NOT NULL
);
CREATE TABLE vision_gateway_gallery (
  gateway text PRIMARY KEY,
  version integer NOT NULL
);
CREATE TABLE vision_gallery_ops (
  gateway    text NOT NULL,
  version    integer NOT NULL,
  member_id  text NOT NULL,
  op         text NOT NULL,
  reason     text,
  command_id text,
  created_at bigint NOT NULL,
  PRIMARY KEY (gateway, version, member_id)
);
CREATE INDEX vision_gallery_ops_member ON vision_gallery_ops (member_id, op);
`,
  },
  {
    // Rollback waits for a target's own answer when its previous value is unknown (rollouts.ts).
    version: 65,
    name: 'fleet rollout targets answered',
    sql: `ALTER TABLE fleet_rollout_targets ADD COLUMN answered boolean NOT NULL DEFAULT false;`,
  },
  {
    // Presence history (docs/fleet-provisioning.md "Presence history" [PRESENCE-HIST-1]):
    // one row per transition, newest kept per gateway (pruned by the presence sweep).
    version: 61,
    name: 'gateway presence history',
    sql: `
CREATE TABLE gateway_presence_history (
  id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  gateway text NOT NULL REFERENCES gateways (id) ON DELETE CASCADE,
  -- cloud clock: when the transition was applied (birth/death/revoke) or judged (sweep)
  at      bigint NOT NULL,
  state   text NOT NULL CHECK (state IN ('online', 'offline', 'stalled', 'revoked')),
  reason  text,
  bd_seq  bigint,
  source  text NOT NULL CHECK (source IN ('birth', 'death', 'heartbeat', 'sweep', 'revoke'))
);
CREATE INDEX gateway_presence_history_gateway ON gateway_presence_history (gateway, id DESC);
`,
  },
];

const LOCK_KEY = 0x5354_4c4b; // "STLK": one advisory lock for all storelink migrations

export async function migrate(sql: Sql, migrations: readonly Migration[] = MIGRATIONS): Promise<number[]> {
  await sql.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at bigint NOT NULL
  )`);
  const applied: number[] = [];
  for (const m of [...migrations].sort((a, b) => a.version - b.version)) {
    try {
      const did = await sql.transaction(async (tx) => {
        await tx.query('SELECT pg_advisory_xact_lock($1)', [LOCK_KEY]);
        const seen = await tx.query('SELECT 1 FROM schema_migrations WHERE version = $1', [m.version]);
        if (seen.rows.length > 0) return false;
        await tx.exec(m.sql);
        await tx.query('INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)', [
          m.version,
          m.name,
          Date.now(),
        ]);
        return true;
      });
      if (did) applied.push(m.version);
    } catch (e) {
      throw cloudError(
        'CLOUD_ERR_MIGRATION',
        { version: m.version, name: m.name, reason: (e as Error).message },
        { cause: e },
      );
    }
  }
  return applied;
}
