import { edgeError } from '../errors.ts';
import type { LogFn } from './engine.ts';
import { createMemoryStore } from './memory.ts';
import { openResilientLevelStore, type ResilientStoreOptions } from './reopen.ts';
import type { EdgeStore, OutboxOptions } from './types.ts';

export type { LogFn } from './engine.ts';
export { type LevelStoreOptions, openLevelStore, WATERMARK_FILE } from './level.ts';
export { createMemoryStore } from './memory.ts';
export type { DiskGuardOptions, DiskGuardStatus } from './disk-guard.ts';
export { openResilientLevelStore, type ResilientStore, type StoreHealth } from './reopen.ts';
export type * from './types.ts';

export interface EdgeStoreConfig extends OutboxOptions {
  kind: 'level' | 'memory';
  /** Data directory of the LevelDB store (required for `kind: 'level'`). */
  dir?: string;
  onLog?: LogFn;
  /** Disk reserve of the LevelDB store [OUTBOX-DISK-1]; `false` = off. Default: see disk-guard.ts. */
  disk?: ResilientStoreOptions['disk'];
}

/**
 * Opens the configured outbox + KV store. LevelDB: with the disk reserve and reopen after
 * a write error around it [OUTBOX-DISK-1] [OUTBOX-DISK-2] (`health()` on the result).
 */
export function openEdgeStore(config: EdgeStoreConfig): Promise<EdgeStore> {
  if (config.kind === 'memory') return createMemoryStore(config);
  if (!config.dir)
    return Promise.reject(edgeError('EDGE_ERR_CONFIG', { errors: 'outbox kind "level" needs a dir' }));
  return openResilientLevelStore(config.dir, config);
}
