import { type Lane, newId } from '@storelink/protocols';
import { OutboxCore, type WriteSet } from './core.ts';
import { EngineOutbox, type LogFn, type OutboxStorage } from './engine.ts';
import type { EdgeStore, KvStore, OutboxOptions } from './types.ts';

/**
 * In-memory outbox and KV: the same state machine as the LevelDB store (core.ts) over
 * maps, for tests and for agents that are told to keep nothing on disk.
 */
class MemoryStorage implements OutboxStorage {
  readonly lanes: Record<Lane, Map<number, string>> = {
    tx: new Map(),
    event: new Map(),
    telemetry: new Map(),
  };

  async write(ws: WriteSet): Promise<void> {
    if (ws.repair)
      for (const r of ws.repair.removed) for (const seq of r.seqs) this.lanes[r.lane].delete(seq);
    for (const e of ws.events) this.lanes[e.lane].set(e.seq, e.json);
    for (const r of ws.removed) for (const seq of r.seqs) this.lanes[r.lane].delete(seq);
  }

  async readRange(lane: Lane, afterSeq: number, lastSeq: number, limit: number) {
    const map = this.lanes[lane];
    const out: Array<{ seq: number; json: string }> = [];
    for (let seq = afterSeq + 1; seq <= lastSeq && out.length < limit; seq++) {
      const json = map.get(seq);
      if (json !== undefined) out.push({ seq, json });
    }
    return out;
  }
}

export class MemoryKv implements KvStore {
  private readonly map = new Map<string, string>();

  async get(key: string): Promise<string | undefined> {
    return this.map.get(key);
  }
  async put(key: string, value: string): Promise<void> {
    this.map.set(key, value);
  }
  async del(key: string): Promise<void> {
    this.map.delete(key);
  }
  async keys(prefix: string, limit = Number.POSITIVE_INFINITY): Promise<string[]> {
    const out = [...this.map.keys()].filter((k) => k.startsWith(prefix)).sort();
    return out.slice(0, limit);
  }
}

export async function createMemoryStore(opts: OutboxOptions & { onLog?: LogFn }): Promise<EdgeStore> {
  const core = new OutboxCore(opts);
  const outbox = new EngineOutbox(newId(opts.now()), core, new MemoryStorage(), opts.onLog);
  return {
    outbox,
    kv: new MemoryKv(),
    recovery: { repaired: false, lost: {}, lostCount: 0, message: 'memory outbox: nothing to recover' },
    close: () => outbox.close(),
  };
}
