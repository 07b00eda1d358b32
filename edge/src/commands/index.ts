import type { KeyObject } from 'node:crypto';
import {
  type CommandEnvelope,
  type CommandResult,
  checkCommandBody,
  type DeviceCommand,
  deviceCommandTopic,
  isStorelinkError,
  parseJsonPayload,
  protoError,
  type StorelinkError,
  validateCommandEnvelope,
  validateDeviceResult,
  verifyCommand,
} from '@storelink/protocols';
import type { Logger } from 'pino';
import { edgeError } from '../errors.ts';
import { edgeEvent } from '../ingest/edge-events.ts';
import type { Done } from '../ingest/event.ts';
import type { EdgeMetrics } from '../metrics.ts';
import type { KvStore, Outbox } from '../outbox/types.ts';

/** Ledger entries are kept this long past the command's expiry (it cannot run after it). */
export const LEDGER_MARGIN_MS = 60 * 60 * 1000;
const LEDGER = 'cmd!';
const EXPIRY_INDEX = 'cmdexp!';
const MAX_COMMAND_BYTES = 256 * 1024;

interface LedgerEntry {
  state: 'started' | 'done';
  expiresAt: number;
  type: string;
  result?: CommandResult;
}

/**
 * A gateway-executed command type [CMD-ONCE-1]: runs at most once per command id (the
 * router's ledger), its resolved value becomes `command.result` `ok` with `result`. Throw
 * `refuseCommand(error)` to report `rejected` (refused before acting); any other throw is
 * reported as `error`.
 */
export type GatewayExecutor = (cmd: CommandEnvelope) => Promise<unknown>;

const REFUSED = Symbol.for('storelink.commandRefused');
/** Marks an executor's error as a refusal: the command is reported `rejected`, not `error`. */
export function refuseCommand<E extends Error>(error: E): E {
  return Object.assign(error, { [REFUSED]: true });
}
function isRefusal(e: unknown): boolean {
  return typeof e === 'object' && e !== null && (e as Record<symbol, unknown>)[REFUSED] === true;
}

export interface CommandDeps {
  publicKey: KeyObject | undefined;
  site: string;
  gateway: string;
  kv: KvStore;
  outbox: Outbox;
  now: () => number;
  metrics: EdgeMetrics;
  logger: Logger;
  commandTimeoutMs: number;
  knownDevice: (id: string) => boolean;
  /** Publishes to a device through the local broker (QoS1). */
  sendToDevice: (topic: string, json: string) => Promise<void>;
  reportToDevice: (deviceId: string, topic: string, error: StorelinkError) => void;
}

interface PendingDevice {
  device: string;
  resolve: (r: Omit<CommandResult, 'commandId' | 'type' | 'receivedAt'>) => Promise<void>;
}

const pad = (n: number) => String(n).padStart(15, '0');

/**
 * Command router [CMD-SIG-1][CMD-EXP-1][CMD-ONCE-1]: verify signature, then expiry; look
 * the id up in the durable ledger (a repeat returns the first result with
 * `duplicate: true` and does nothing); check type, target and payload; mark the id
 * started *before* acting; act (gateway types here, device types routed to the device);
 * store the result; report every outcome as a `command.result` event in the tx lane.
 */
export class CommandRouter {
  private readonly running = new Map<string, Promise<CommandResult>>();
  private readonly awaitingDevice = new Map<string, PendingDevice>();
  private readonly executors = new Map<string, GatewayExecutor>();
  private pruneTimer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly d: CommandDeps) {
    this.executors.set('ping', async (cmd) => ({
      echo: (cmd.payload as { echo?: string }).echo,
      gateway: d.gateway,
      at: d.now(),
    }));
  }

  /**
   * Adds an agent-executed command type (a capability that runs on the gateway itself).
   * `syncsBeforeActing`: the executor itself makes a synced write to this same store
   * before it acts (the VMC driver's per-order ledger does, before any motor runs). The
   * router's `started` mark is then written without its own fsync: the executor's synced
   * write flushes the log that holds it too, so [CMD-ONCE-1] holds with one fsync less on
   * the pay-to-vend path [CMD-ONCE-2].
   */
  registerExecutor(type: string, fn: GatewayExecutor, opts: { syncsBeforeActing?: boolean } = {}): void {
    this.executors.set(type, fn);
    if (opts.syncsBeforeActing) this.syncedByExecutor.add(type);
    else this.syncedByExecutor.delete(type);
  }

  private readonly syncedByExecutor = new Set<string>();

  /** Reports commands a previous run started but never finished, then prunes. */
  async start(pruneEveryMs = 10 * 60 * 1000): Promise<void> {
    for (const key of await this.d.kv.keys(LEDGER)) {
      const raw = await this.d.kv.get(key);
      if (!raw) continue;
      const entry = JSON.parse(raw) as LedgerEntry;
      if (entry.state !== 'started') continue;
      const id = key.slice(LEDGER.length);
      const now = this.d.now();
      const result = this.reject(id, entry.type, now, edgeError('EDGE_ERR_CMD_INTERRUPTED', { id }), 'error');
      await this.finish(id, entry, result);
    }
    await this.prune();
    this.pruneTimer = setInterval(() => void this.prune().catch(() => undefined), pruneEveryMs);
    this.pruneTimer.unref();
  }

  /** Drops ledger entries whose command expired more than LEDGER_MARGIN_MS ago. */
  async prune(): Promise<number> {
    const horizon = this.d.now() - LEDGER_MARGIN_MS;
    let n = 0;
    for (const key of await this.d.kv.keys(EXPIRY_INDEX, 1000)) {
      const [, exp, id] = key.split('!');
      if (Number(exp) >= horizon) break;
      await this.d.kv.del(LEDGER + id);
      await this.d.kv.del(key);
      n++;
    }
    return n;
  }

  /** A message on `sl/v1/{site}/{gw}/cmd`. */
  async handle(topic: string, raw: Buffer): Promise<void> {
    const receivedAt = this.d.now();
    const parsed = parseJsonPayload(raw, MAX_COMMAND_BYTES);
    if (!parsed.ok) return this.malformed(topic, parsed.error.message, undefined);
    const env = validateCommandEnvelope.check(parsed.value);
    if (!env.ok) return this.malformed(topic, env.error.message, parsed.value);
    const cmd = env.value;

    if (!this.d.publicKey) {
      // Deny by default: without a trusted key no signature can be good.
      this.d.logger.error({ id: cmd.id }, 'no command key configured (/cloud/publicKeyPem or publicKeyFile)');
      const e = protoError('PROTO_ERR_BAD_SIGNATURE', { id: cmd.id });
      return this.emit(this.reject(cmd.id, cmd.type, receivedAt, e), undefined);
    }
    // Signature first, then expiry [CMD-SIG-1][CMD-EXP-1]; a refused command is never
    // recorded in the ledger, so a forged id cannot block the genuine command.
    const v = verifyCommand(this.d.publicKey, topic, cmd, receivedAt);
    if (!v.ok) return this.emit(this.reject(cmd.id, cmd.type, receivedAt, v.error), undefined);

    // [CMD-ONCE-1] one execution per id, in this process and across restarts. The
    // in-process entry is set before any await, so two copies arriving together share it.
    const running = this.running.get(cmd.id);
    if (running) {
      await running;
      const entry = await this.d.kv.get(LEDGER + cmd.id);
      const first = entry ? (JSON.parse(entry) as LedgerEntry).result : undefined;
      if (first) await this.emitDuplicate(first);
      return;
    }
    const run = this.lookupOrExecute(cmd, receivedAt);
    this.running.set(
      cmd.id,
      run.then((r) => r.result),
    );
    try {
      const { result, duplicate } = await run;
      if (duplicate) await this.emitDuplicate(result);
      else await this.emit(result, cmd.target.device);
    } finally {
      this.running.delete(cmd.id);
    }
  }

  private async lookupOrExecute(
    cmd: CommandEnvelope,
    receivedAt: number,
  ): Promise<{ result: CommandResult; duplicate: boolean }> {
    const prior = await this.d.kv.get(LEDGER + cmd.id);
    if (prior) {
      const entry = JSON.parse(prior) as LedgerEntry;
      if (entry.result) return { result: entry.result, duplicate: true };
    }
    return { result: await this.execute(cmd, receivedAt, prior !== undefined), duplicate: false };
  }

  private async execute(
    cmd: CommandEnvelope,
    receivedAt: number,
    wasStarted: boolean,
  ): Promise<CommandResult> {
    const entry: LedgerEntry = { state: 'started', expiresAt: cmd.expiresAt, type: cmd.type };
    if (wasStarted) {
      // Started by an earlier run that stopped before finishing: it may have acted.
      const r = this.reject(
        cmd.id,
        cmd.type,
        receivedAt,
        edgeError('EDGE_ERR_CMD_INTERRUPTED', { id: cmd.id }),
        'error',
      );
      return this.record(cmd.id, entry, r);
    }
    const body = checkCommandBody(cmd);
    if (!body.ok) return this.record(cmd.id, entry, this.reject(cmd.id, cmd.type, receivedAt, body.error));
    const device = cmd.target.device;
    if (device && !this.d.knownDevice(device)) {
      const e = edgeError('EDGE_ERR_CMD_UNKNOWN_DEVICE', { id: cmd.id, device });
      return this.record(cmd.id, entry, this.reject(cmd.id, cmd.type, receivedAt, e));
    }
    const executor = device ? undefined : this.executors.get(cmd.type);
    if (!device && !executor) {
      const e = edgeError('EDGE_ERR_CMD_UNKNOWN_DEVICE', { id: cmd.id, device: '(gateway)' });
      return this.record(cmd.id, entry, this.reject(cmd.id, cmd.type, receivedAt, e));
    }
    // Mark started before acting: after a crash we must not act again [CMD-ONCE-1].
    await this.putEntry(cmd.id, entry, !(executor && this.syncedByExecutor.has(cmd.type)));
    let outcome: Omit<CommandResult, 'commandId' | 'type' | 'receivedAt'>;
    if (executor) {
      try {
        const result = await executor(cmd);
        outcome = { status: 'ok', result, completedAt: this.d.now() };
      } catch (e) {
        const err = e as Error;
        outcome = {
          // An executor refusing the command (bad payload for this gateway) is `rejected`:
          // nothing was done; any other throw is an `error` that may have acted.
          status: isRefusal(err) ? 'rejected' : 'error',
          code: isStorelinkError(err) ? err.code : 'EDGE_ERR_CMD_FAILED',
          message: String(err.message).slice(0, 1024),
          completedAt: this.d.now(),
        };
      }
    } else {
      outcome = await this.toDevice(cmd, device!);
    }
    const result: CommandResult = { commandId: cmd.id, type: cmd.type, receivedAt, ...outcome };
    return this.record(cmd.id, entry, result);
  }

  private toDevice(
    cmd: CommandEnvelope,
    device: string,
  ): Promise<Omit<CommandResult, 'commandId' | 'type' | 'receivedAt'>> {
    return new Promise((resolve) => {
      let settled = false;
      const finish = (r: Omit<CommandResult, 'commandId' | 'type' | 'receivedAt'>) => {
        if (settled) return Promise.resolve();
        settled = true;
        clearTimeout(timer);
        this.awaitingDevice.delete(cmd.id);
        resolve(r);
        // The device's PUBACK waits until its answer is recorded.
        return (this.running.get(cmd.id) ?? Promise.resolve()).then(() => undefined);
      };
      const timer = setTimeout(() => {
        const e = edgeError('EDGE_ERR_CMD_TIMEOUT', {
          device,
          id: cmd.id,
          timeoutMs: this.d.commandTimeoutMs,
        });
        void finish({ status: 'timeout', code: e.code, message: e.message, completedAt: this.d.now() });
      }, this.d.commandTimeoutMs);
      timer.unref?.();
      this.awaitingDevice.set(cmd.id, { device, resolve: finish });
      // The device gets what it needs to act, not the signature [docs/protocol.md].
      const dc: DeviceCommand = { id: cmd.id, expiresAt: cmd.expiresAt, payload: cmd.payload };
      this.d.sendToDevice(deviceCommandTopic(device, cmd.type), JSON.stringify(dc)).catch((e: unknown) => {
        void finish({
          status: 'error',
          code: 'EDGE_ERR_CMD_FAILED',
          message: `could not deliver to device: ${(e as Error).message}`,
          completedAt: this.d.now(),
        });
      });
    });
  }

  /** `dev/{device}/res/{commandId}` from the local broker. */
  deviceResult(deviceId: string, commandId: string, raw: Buffer, done: Done): void {
    const topic = `dev/${deviceId}/res/${commandId}`;
    const pending = this.awaitingDevice.get(commandId);
    if (!pending || pending.device !== deviceId) {
      this.d.logger.info(
        { device: deviceId, commandId },
        'device result for no pending command (late or unknown)',
      );
      done();
      return;
    }
    const parsed = parseJsonPayload(raw, 64 * 1024);
    const r = parsed.ok ? validateDeviceResult.check(parsed.value, 'device result') : parsed;
    if (!r.ok) {
      this.d.metrics.rejected.inc({ code: r.error.code });
      this.d.reportToDevice(deviceId, topic, r.error);
      done();
      return;
    }
    const { status, result, code, message } = r.value;
    const outcome: Omit<CommandResult, 'commandId' | 'type' | 'receivedAt'> = {
      status,
      completedAt: this.d.now(),
    };
    if (result !== undefined) outcome.result = result;
    if (code !== undefined) outcome.code = code;
    if (message !== undefined) outcome.message = message;
    pending.resolve(outcome).then(
      () => done(),
      (e: unknown) => done(e as Error),
    );
  }

  private reject(
    id: string,
    type: string,
    receivedAt: number,
    error: StorelinkError,
    status: 'rejected' | 'error' = 'rejected',
  ): CommandResult {
    return {
      commandId: id,
      type: type.slice(0, 64),
      status,
      code: error.code,
      message: error.message.slice(0, 1024),
      receivedAt,
      completedAt: this.d.now(),
    };
  }

  /**
   * One fsync per ledger change, not two: the expiry-index key is written first without
   * sync, and the entry's synced write flushes the log that holds both (LevelDB's log is
   * one sequential file). A dispense waits for this before the motor runs [CMD-ONCE-1],
   * so every fsync here is on the pay-to-vend path (p99 of one fsync here: ~11 ms).
   */
  private async putEntry(id: string, entry: LedgerEntry, sync = true): Promise<void> {
    await this.d.kv.put(`${EXPIRY_INDEX}${pad(entry.expiresAt)}!${id}`, '');
    await this.d.kv.put(LEDGER + id, JSON.stringify(entry), sync ? { sync: true } : {});
  }

  private async record(id: string, entry: LedgerEntry, result: CommandResult): Promise<CommandResult> {
    await this.putEntry(id, { ...entry, state: 'done', result });
    return result;
  }

  private async finish(id: string, entry: LedgerEntry, result: CommandResult): Promise<void> {
    await this.record(id, entry, result);
    await this.emit(result, undefined);
  }

  private emitDuplicate(first: CommandResult): Promise<void> {
    this.d.logger.info(
      { id: first.commandId },
      edgeError('EDGE_ERR_CMD_REPLAY', { id: first.commandId }).message,
    );
    return this.emit({ ...first, duplicate: true }, undefined, true);
  }

  /** Every outcome travels as a `command.result` event in the tx lane. */
  private async emit(result: CommandResult, device: string | undefined, duplicate = false): Promise<void> {
    this.d.metrics.commandResults.inc({ status: duplicate ? 'duplicate' : result.status });
    if (!duplicate) this.d.metrics.commandLatency.observe((result.completedAt - result.receivedAt) / 1000);
    const level = result.status === 'ok' ? 'info' : 'warn';
    this.d.logger[level](
      { id: result.commandId, type: result.type, status: result.status, code: result.code, duplicate },
      'command result',
    );
    if (this.closed) return;
    try {
      await this.d.outbox.append(edgeEvent(this.d, 'command.result', device ?? this.d.gateway, result));
    } catch (e) {
      // The ledger holds the result: a resend of the command id reports it again.
      this.d.logger.error({ id: result.commandId, err: (e as Error).message }, 'command result not stored');
    }
  }

  private malformed(topic: string, reason: string, value: unknown): Promise<void> {
    const e = edgeError('EDGE_ERR_CMD_MALFORMED', { topic, reason });
    this.d.metrics.commandResults.inc({ status: 'rejected' });
    this.d.logger.warn({ code: e.code, topic }, e.message);
    const v = value as { id?: unknown; type?: unknown } | undefined;
    if (v && typeof v.id === 'string' && v.id.length >= 1 && v.id.length <= 64) {
      // Enough to tell the cloud which command it was.
      const now = this.d.now();
      const type = typeof v.type === 'string' ? v.type : '';
      return this.emit(this.reject(v.id, type, now, e), undefined);
    }
    return Promise.resolve();
  }

  /** Outstanding device commands are left 'started'; the next start reports them interrupted. */
  async close(): Promise<void> {
    if (this.pruneTimer) clearInterval(this.pruneTimer);
    this.closed = true;
    // Gateway-executed commands finish quickly; device commands may wait for seconds and
    // stay 'started' instead.
    const gatewayRuns = [...this.running.entries()]
      .filter(([id]) => !this.awaitingDevice.has(id))
      .map(([, p]) => p);
    await Promise.race([Promise.allSettled(gatewayRuns), new Promise((r) => setTimeout(r, 2000).unref())]);
  }
}
