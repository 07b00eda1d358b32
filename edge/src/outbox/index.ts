import { edgeError } from '../errors.ts';
import type { LogFn } from './engine.ts';
import { openLevelStore } from './level.ts';
import { createMemoryStore } from './memory.ts';
import type { EdgeStore, OutboxOptions } from './types.ts';

export type { LogFn } from './engine.ts';
export { type LevelStoreOptions, openLevelStore, WATERMARK_FILE } from './level.ts';
export { createMemoryStore } from './memory.ts';
export type * from './types.ts';

export interface EdgeStoreConfig extends OutboxOptions {
  kind: 'level' | 'memory';
  /** Data directory of the LevelDB store (required for `kind: 'level'`). */
  dir?: string;
  onLog?: LogFn;
}

/** Opens the configured outbox + KV store. */
export function openEdgeStore(config: EdgeStoreConfig): Promise<EdgeStore> {
  if (config.kind === 'memory') return createMemoryStore(config);
  if (!config.dir)
    return Promise.reject(edgeError('EDGE_ERR_CONFIG', { errors: 'outbox kind "level" needs a dir' }));
  return openLevelStore(config.dir, config);
}
