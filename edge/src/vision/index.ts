import { readFileSync } from 'node:fs';
import { type CommandEnvelope, vision } from '@storelink/protocols';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { refuseCommand } from '../commands/index.ts';
import { edgeError } from '../errors.ts';
import type { KvStore } from '../outbox/types.ts';
import type { VisionConfig } from './config.ts';
import { Gallery } from './gallery.ts';
import { type VisionEmit, VisionService } from './service.ts';

export type { VisionConfig } from './config.ts';
export { Gallery } from './gallery.ts';
export { VisionService, type VisionStatus } from './service.ts';

export interface StartVisionOptions {
  config: VisionConfig;
  gateway: string;
  kv: KvStore;
  emit: VisionEmit;
  now: () => number;
  logger: Logger;
  registry: Registry;
  commands: { registerExecutor(type: string, fn: (cmd: CommandEnvelope) => Promise<unknown>): void };
}

export function readGalleryKey(c: VisionConfig): Buffer | undefined {
  let b64 = c.galleryKey;
  if (!b64 && c.galleryKeyFile) {
    try {
      b64 = readFileSync(c.galleryKeyFile, 'utf8').trim();
    } catch (e) {
      throw edgeError('EDGE_ERR_CONFIG', {
        errors: `/vision/galleryKeyFile cannot be read: ${(e as Error).message}`,
      });
    }
  }
  if (!b64) return undefined;
  const key = Buffer.from(b64, 'base64');
  if (key.length !== 32)
    throw edgeError('EDGE_ERR_CONFIG', { errors: '/vision gallery key must be 32 bytes (base64)' });
  return key;
}

/**
 * Vision on the agent: the gallery (sealed at rest in the agent's kv) with its two
 * gateway commands, and the pipeline worker. Gallery commands are refused — nothing
 * applied — when an entry does not open with this gateway's key.
 */
export async function startVision(
  o: StartVisionOptions,
): Promise<{ service: VisionService; gallery: Gallery }> {
  const gallery = new Gallery(o.kv, o.gateway, readGalleryKey(o.config));
  const loaded = await gallery.load();
  if (loaded.unreadable.length > 0) {
    o.logger.error(
      { members: loaded.unreadable },
      'gallery entries that do not open with the configured key were skipped',
    );
  }
  const refusing = <T>(fn: () => Promise<T>) =>
    fn().catch((e: unknown) => {
      throw refuseCommand(e as Error);
    });
  o.commands.registerExecutor(vision.VISION_GALLERY_UPSERT, (cmd) =>
    refusing(() => gallery.upsert(cmd.payload as vision.GalleryUpsert)),
  );
  o.commands.registerExecutor(vision.VISION_GALLERY_REMOVE, async (cmd) => {
    const r = await gallery.remove(cmd.payload as vision.GalleryRemove);
    o.logger.info({ removed: r.removed, absent: r.absent, version: r.version }, 'gallery members removed');
    return r;
  });
  const service = new VisionService({
    config: o.config,
    gallery,
    emit: o.emit,
    now: o.now,
    logger: o.logger.child({ component: 'vision' }),
    registry: o.registry,
  });
  await service.start();
  return { service, gallery };
}
