import { type Heartbeat, LANES, type LaneStats } from '@storelink/protocols';
import type { Outbox } from './outbox/types.ts';

/** The heartbeat body [docs/protocol.md "Presence"]: outbox figures, devices online, bdSeq, uptime. */
export function heartbeat(o: {
  site: string;
  gateway: string;
  now: number;
  startedAt: number;
  bdSeq: number;
  devicesOnline: string[];
  outbox: Outbox;
  /** Face gallery version (docs/vision.md): the cloud confirms erasure by it [VISION-GALLERY-4]. */
  vision?: { galleryVersion: number; gallerySize: number };
}): Heartbeat {
  const st = o.outbox.stats();
  const lanes: Partial<Record<(typeof LANES)[number], LaneStats>> = {};
  for (const lane of LANES) {
    const { depth, bytes, oldestAgeMs, nextSeq, ackedSeq, dropped } = st.lanes[lane];
    lanes[lane] = { depth, bytes, oldestAgeMs, nextSeq, ackedSeq, dropped };
  }
  return {
    v: 1,
    gateway: o.gateway,
    site: o.site,
    at: o.now,
    bdSeq: o.bdSeq,
    uptimeS: Math.max(0, (o.now - o.startedAt) / 1000),
    devicesOnline: o.devicesOnline,
    outbox: { depth: st.depth, bytes: st.bytes, oldestAgeMs: st.oldestAgeMs, lanes },
    ...(o.vision ? { vision: o.vision } : {}),
  };
}
