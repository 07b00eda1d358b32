import type {
  Ack,
  CommandResultStatus,
  EventEnvelope,
  GatewayState,
  Heartbeat,
  Lane,
  UplinkBatch,
} from '@storelink/protocols';

/**
 * The cloud store: one interface, one SQL implementation (`SqlCloudStore`) over two
 * drivers (PGlite and PostgreSQL), one conformance suite (`conformance.ts`) both pass.
 */

export type PresenceState = 'unknown' | 'online' | 'offline';

export interface GatewayPresence {
  state: PresenceState;
  /** bdSeq of the session `state` belongs to [PRESENCE-BDSEQ-1]. */
  bdSeq: number | null;
  epoch: string | null;
  version: string | null;
  onlineSince: number | null;
  /** `at` of the state message applied last. */
  stateAt: number | null;
  /** Last time anything (state, heartbeat, batch) was heard from the gateway. */
  lastSeen: number | null;
  heartbeat: Heartbeat | null;
}

export interface GatewayRecord {
  id: string;
  site: string;
  name: string | null;
  createdAt: number;
  /** False for gateways known only from traffic through an external broker. */
  hasPassword: boolean;
  presence: GatewayPresence;
}

export interface GatewayCredentials {
  id: string;
  site: string;
  passwordHash: string | null;
}

export interface DeviceRecord {
  gateway: string;
  id: string;
  /** `null` until a device.online / device.offline event has been seen. */
  online: boolean | null;
  presenceReason: string | null;
  presenceAt: number | null;
  firstSeen: number;
  lastSeen: number;
  lastEventType: string;
}

export interface StoredEvent extends EventEnvelope {
  epoch: string;
  receivedAt: number;
}

export interface GapRecord {
  gateway: string;
  epoch: string;
  lane: Lane;
  fromSeq: number;
  toSeq: number;
  reason: 'dropped_at_edge';
  at: number;
}

/** A range of seqs not yet received while later ones were: the watermark waits at it. */
export interface InTransitHole {
  lane: Lane;
  fromSeq: number;
  toSeq: number;
}

export interface CommandResultApplied {
  id: string;
  status: CommandResultStatus;
  /** Issued → result committed, in ms of the cloud clock. */
  rttMs: number;
}

export interface IngestResult {
  epoch: string;
  inserted: number;
  duplicates: number;
  insertedByLane: Partial<Record<Lane, number>>;
  duplicatesByLane: Partial<Record<Lane, number>>;
  /** The watermarks after the commit, for every lane of (gateway, epoch) [OUTBOX-ACK-2]. */
  acks: Ack['acks'];
  /** Gaps recorded by this batch. */
  gaps: GapRecord[];
  /** Holes left after this batch (stored events above a missing seq). */
  holes: InTransitHole[];
  /** Command rows this batch completed. */
  commandResults: CommandResultApplied[];
}

export type CommandStatus = 'pending' | 'sent' | CommandResultStatus;

export interface CommandRecord {
  id: string;
  gateway: string;
  site: string;
  device: string | null;
  type: string;
  payload: unknown;
  issuedAt: number;
  expiresAt: number;
  sig: string;
  status: CommandStatus;
  result: unknown;
  code: string | null;
  message: string | null;
  sentAt: number | null;
  /** Edge clock: when the edge finished the command. */
  completedAt: number | null;
  /** Cloud clock: when the result was committed. */
  resultReceivedAt: number | null;
  /** `resultReceivedAt - issuedAt`. */
  rttMs: number | null;
  /** True when the stored result is a `duplicate: true` report (no first result seen). */
  duplicateResult: boolean | null;
}

export interface NewCommand {
  id: string;
  gateway: string;
  site: string;
  device: string | null;
  type: string;
  payload: unknown;
  issuedAt: number;
  expiresAt: number;
  sig: string;
}

export interface LaneCount {
  epoch: string;
  lane: Lane;
  /** Events stored. */
  stored: number;
  minSeq: number | null;
  maxSeq: number | null;
  /** The committed watermark. */
  acked: number;
  /** Gap records and the seqs they cover. */
  gaps: number;
  gapSeqs: number;
}

export interface EventFilter {
  gateway?: string;
  device?: string;
  type?: string;
  lane?: Lane;
  limit: number;
}

export interface LaneEventsQuery {
  gateway: string;
  /** Default: the gateway's newest epoch. */
  epoch?: string;
  lane: Lane;
  /** Only seqs above this. */
  after: number;
  limit: number;
}

export type StateOutcome =
  | { applied: true; state: PresenceState }
  | { applied: false; reason: 'stale_birth' | 'stale_death' | 'not_online' | 'site_mismatch' };

export interface CloudStore {
  /** Resolves when the database answers (readiness). */
  ping(): Promise<void>;
  close(): Promise<void>;

  /** Creates a gateway; CLOUD_ERR_CONFLICT when the id exists. */
  createGateway(
    g: { id: string; site: string; name?: string | null; passwordHash: string },
    now: number,
  ): Promise<GatewayRecord>;
  /** Creates or updates (site, name, password) — used to seed gateways from the config. */
  upsertGateway(
    g: { id: string; site: string; name?: string | null; passwordHash: string },
    now: number,
  ): Promise<void>;
  getGatewayCredentials(id: string): Promise<GatewayCredentials | undefined>;
  getGateway(id: string): Promise<GatewayRecord | undefined>;
  listGateways(): Promise<GatewayRecord[]>;

  /** Birth/death [PRESENCE-BDSEQ-1]. */
  applyGatewayState(state: GatewayState, receivedAt: number): Promise<StateOutcome>;
  /** Heartbeats from an older session than the current one are ignored (returns false). */
  recordHeartbeat(hb: Heartbeat, receivedAt: number): Promise<boolean>;

  /**
   * Stores a validated batch in ONE transaction: events (deduplicated by
   * (gateway, epoch, lane, seq)), watermarks, gaps, device presence and command results.
   * Resolves only after COMMIT; the caller publishes `acks` then [OUTBOX-ACK-2].
   */
  ingestBatch(batch: UplinkBatch, receivedAt: number): Promise<IngestResult>;

  listDevices(filter?: { gateway?: string; online?: boolean }): Promise<DeviceRecord[]>;
  recentEvents(filter: EventFilter): Promise<StoredEvent[]>;
  laneEvents(q: LaneEventsQuery): Promise<StoredEvent[]>;
  laneCounts(gateway: string): Promise<LaneCount[]>;
  listGaps(gateway: string, filter?: { epoch?: string; lane?: Lane }): Promise<GapRecord[]>;

  insertCommand(cmd: NewCommand): Promise<CommandRecord>;
  markCommandSent(id: string, sentAt: number): Promise<void>;
  getCommand(id: string): Promise<CommandRecord | undefined>;
  listCommands(filter: { gateway?: string; limit: number }): Promise<CommandRecord[]>;
}
