import { join } from 'node:path';
import type { Logger } from 'pino';
import type { SendCommandInput } from '../commands/service.ts';
import type { SqlCloudStore } from '../store/sql-store.ts';
import type { CommandRecord } from '../store/store.ts';
import { createEmbedder } from './embedder.ts';
import { loadOrCreateVisionKey, VisionGallery } from './service.ts';

export type { VisionRoutesOptions } from './routes.ts';
export { default as visionRoutes } from './routes.ts';
export { galleryKeyFor, VisionGallery } from './service.ts';

/** The cloud's face gallery (docs/vision.md) on the SQL store; master key in `<dataDir>/vision-gallery.key`. */
export function startVisionGallery(o: {
  store: SqlCloudStore;
  dataDir: string;
  sendCommand: (c: SendCommandInput) => Promise<CommandRecord>;
  now: () => number;
  logger?: Logger;
}): { gallery: VisionGallery; masterKey: Buffer } {
  const masterKey = loadOrCreateVisionKey(join(o.dataDir, 'vision-gallery.key'));
  const gallery = new VisionGallery({
    sql: o.store.sql,
    store: o.store,
    sendCommand: o.sendCommand,
    embedder: createEmbedder(),
    masterKey,
    now: o.now,
    ...(o.logger ? { logger: o.logger.child({ component: 'vision' }) } : {}),
  });
  return { gallery, masterKey };
}
