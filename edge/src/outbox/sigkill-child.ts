/**
 * Child process for the SIGKILL test in level.test.ts (not a test itself): appends tx
 * events with 50 concurrent writers and prints each acknowledged seq on stdout, as a
 * device would count its PUBACKs, until it is killed.
 *
 *   node --import tsx edge/src/outbox/sigkill-child.ts <dir> <durability>
 */
import { newId } from '@storelink/protocols';
import { openLevelStore } from './level.ts';
import type { Durability } from './types.ts';

const [dir, durability = 'process'] = process.argv.slice(2);
if (!dir) throw new Error('usage: sigkill-child.ts <dir> [process|power]');
const store = await openLevelStore(dir, {
  durability: durability as Durability,
  maxBytes: 0,
  lanes: { tx: { maxBytes: 0 }, event: { maxBytes: 0 }, telemetry: { maxBytes: 0 } },
  now: Date.now,
  expireIntervalMs: 0,
});
let n = 0;
async function writer(): Promise<never> {
  for (;;) {
    const i = n++;
    const env = await store.outbox.append({
      id: newId(),
      type: 'vend.dispensed',
      device: `vm-${i % 4}`,
      gateway: 'gw-kill',
      site: 'site-kill',
      ts: Date.now(),
      rts: Date.now(),
      lane: 'tx',
      mid: `m-${i}`,
      payload: { slot: i % 24, order: `o-${i}` },
    });
    // stdout to a pipe is written synchronously on Linux: once this returns, the parent
    // has the line even if we are killed right after.
    process.stdout.write(`${env.seq}\n`);
  }
}
process.stdout.write('ready\n');
await Promise.all(Array.from({ length: 50 }, writer));
