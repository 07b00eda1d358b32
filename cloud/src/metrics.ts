import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/**
 * Every cloud metric, on a per-instance Registry (never the global default), so several
 * clouds can run in one test process. Names: storelink_cloud_<area>_<what>_<unit>.
 */
export function createCloudMetrics(opts: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (opts.defaultMetrics) collectDefaultMetrics({ register: registry, prefix: 'storelink_cloud_' });
  const registers = [registry];
  return {
    registry,
    brokerRefused: new Counter({
      name: 'storelink_cloud_broker_refused_total',
      help: 'Connections, publishes and subscriptions the embedded broker refused, by reason',
      labelNames: ['reason'] as const,
      registers,
    }),
    brokerClients: new Gauge({
      name: 'storelink_cloud_broker_clients',
      help: 'Clients connected to the embedded broker',
      registers,
    }),
    ingestBatches: new Counter({
      name: 'storelink_cloud_ingest_batches_total',
      help: 'Uplink batches committed and acknowledged',
      registers,
    }),
    ingestEvents: new Counter({
      name: 'storelink_cloud_ingest_events_total',
      help: 'Events stored (first time seen), by lane',
      labelNames: ['lane'] as const,
      registers,
    }),
    ingestDuplicates: new Counter({
      name: 'storelink_cloud_ingest_duplicates_total',
      help: 'Events received again and not stored a second time, by lane',
      labelNames: ['lane'] as const,
      registers,
    }),
    ingestGapSeqs: new Counter({
      name: 'storelink_cloud_ingest_gap_seqs_total',
      help: 'Seqs recorded as gaps (never received), by lane and reason',
      labelNames: ['lane', 'reason'] as const,
      registers,
    }),
    ingestHoles: new Counter({
      name: 'storelink_cloud_ingest_in_transit_holes_total',
      help: 'Batches that left a hole below stored events (the watermark waits for a replay), by lane',
      labelNames: ['lane'] as const,
      registers,
    }),
    ingestRejected: new Counter({
      name: 'storelink_cloud_ingest_rejected_total',
      help: 'Uplink batches, states and heartbeats refused and not acknowledged, by channel and code',
      labelNames: ['channel', 'code'] as const,
      registers,
    }),
    ingestFailed: new Counter({
      name: 'storelink_cloud_ingest_failed_total',
      help: 'Uplink batches not acknowledged because the store or the broker failed (the edge resends)',
      labelNames: ['code'] as const,
      registers,
    }),
    ingestLatency: new Histogram({
      name: 'storelink_cloud_ingest_latency_seconds',
      help: 'Batch received → committed and ack published',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    ingestQueue: new Gauge({
      name: 'storelink_cloud_ingest_pending_batches',
      help: 'Uplink batches received and not yet committed',
      registers,
    }),
    gatewayStates: new Counter({
      name: 'storelink_cloud_gateway_states_total',
      help: 'Gateway birth/death messages, by state and whether they were applied',
      labelNames: ['state', 'applied'] as const,
      registers,
    }),
    heartbeats: new Counter({
      name: 'storelink_cloud_heartbeats_total',
      help: 'Gateway heartbeats, by whether they were applied (true/false) or replaced in the queue by a newer one (coalesced)',
      labelNames: ['applied'] as const,
      registers,
    }),
    commandsSent: new Counter({
      name: 'storelink_cloud_commands_sent_total',
      help: 'Commands signed, stored and published, by type',
      labelNames: ['type'] as const,
      registers,
    }),
    commandsRedelivered: new Counter({
      name: 'storelink_cloud_commands_redelivered_total',
      help: 'Open commands published again when their gateway came online [CMD-REDELIVER-1]',
      registers,
    }),
    commandResults: new Counter({
      name: 'storelink_cloud_command_results_total',
      help: 'Command results committed, by status',
      labelNames: ['status'] as const,
      registers,
    }),
    commandRtt: new Histogram({
      name: 'storelink_cloud_command_rtt_seconds',
      help: 'Command issued → its result committed',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60],
      registers,
    }),
    alertsRaised: new Counter({
      name: 'storelink_cloud_alerts_raised_total',
      help: 'Fleet alerts raised (a new active alert, not a repeat of one [ALERT-DEDUPE-1]), by kind',
      labelNames: ['kind'] as const,
      registers,
    }),
    alertsCleared: new Counter({
      name: 'storelink_cloud_alerts_cleared_total',
      help: 'Fleet alerts cleared because their condition ended, by kind',
      labelNames: ['kind'] as const,
      registers,
    }),
    alertsActive: new Gauge({
      name: 'storelink_cloud_alerts_active',
      help: 'Active fleet alerts at the last sweep, by kind',
      labelNames: ['kind'] as const,
      registers,
    }),
    webhookDeliveries: new Counter({
      name: 'storelink_cloud_webhook_deliveries_total',
      help: 'Alert webhook delivery attempts, by outcome (delivered, retry, failed)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    webhookLatency: new Histogram({
      name: 'storelink_cloud_webhook_delivery_seconds',
      help: 'Alert webhook POST → answer (or error)',
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    }),
    webhookPending: new Gauge({
      name: 'storelink_cloud_webhook_pending',
      help: 'Alert webhook deliveries waiting to be sent or retried',
      registers,
    }),
    shadowChanges: new Counter({
      name: 'storelink_cloud_shadow_changes_total',
      help: 'Desired shadow versions made (each one shadow.delta command), by target (gateway, device)',
      labelNames: ['target'] as const,
      registers,
    }),
    shadowRefused: new Counter({
      name: 'storelink_cloud_shadow_refused_total',
      help: 'Shadow changes refused, by code (CLOUD_ERR_SHADOW_VERSION: made against a stale version)',
      labelNames: ['code'] as const,
      registers,
    }),
    shadowReports: new Counter({
      name: 'storelink_cloud_shadow_reports_total',
      help: 'Shadow outcomes from the edge, by status (applied, failed, refused)',
      labelNames: ['status'] as const,
      registers,
    }),
    shadowReissued: new Counter({
      name: 'storelink_cloud_shadow_reissued_total',
      help: 'Pending shadows sent again at a gateway birth because their command could not arrive [SHADOW-REDELIVER-1]',
      registers,
    }),
    rolloutTargets: new Counter({
      name: 'storelink_cloud_rollout_targets_total',
      help: 'Rollout target outcomes, by outcome (succeeded, failed, rolled_back, rollback_failed)',
      labelNames: ['outcome'] as const,
      registers,
    }),
    rolloutsHalted: new Counter({
      name: 'storelink_cloud_rollouts_halted_total',
      help: 'Rollouts halted at their error threshold [ROLLOUT-HALT-1]',
      registers,
    }),
    fleetGateways: new Gauge({
      name: 'storelink_cloud_fleet_gateways',
      help: 'Gateways by judged presence (unknown, online, stalled, offline, revoked), computed at scrape [PRESENCE-STALL-1]',
      labelNames: ['state'] as const,
      registers,
    }),
    paymentProviderRequests: new Counter({
      name: 'storelink_cloud_payment_provider_requests_total',
      help: 'Calls to the payment provider API, by provider, op (query, close, refund, deduct) and outcome (ok, processing, orderpaid, unavailable, timeout, bad_signature, auth, rejected, malformed)',
      labelNames: ['provider', 'op', 'outcome'] as const,
      registers,
    }),
    paymentProviderSeconds: new Histogram({
      name: 'storelink_cloud_payment_provider_request_seconds',
      help: 'Payment provider API call latency (seconds), by provider and op',
      labelNames: ['provider', 'op'] as const,
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
  };
}

export type CloudMetrics = ReturnType<typeof createCloudMetrics>;
