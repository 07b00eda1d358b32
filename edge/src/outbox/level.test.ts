import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { outboxSuite } from './conformance.ts';
import { openLevelStore } from './level.ts';
import type { EdgeStore } from './types.ts';

const root = mkdtempSync(join(tmpdir(), 'outbox-level-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const dirs = new WeakMap<EdgeStore, string>();
let n = 0;

outboxSuite(
  { test, describe, expect },
  {
    name: 'level',
    propertyRuns: 25,
    async open(opts) {
      const dir = join(root, `db-${n++}`);
      const store = await openLevelStore(dir, opts);
      dirs.set(store, dir);
      return store;
    },
    async reopen(store, opts) {
      const dir = dirs.get(store)!;
      await store.close();
      const again = await openLevelStore(dir, opts);
      dirs.set(again, dir);
      return again;
    },
  },
);
