import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const made: string[] = [];

/** A fresh temp dir; removed by `cleanupTempDirs()` (tests call it in afterAll) unless KEEP_TMP=1. */
export function tempDir(prefix = 'storelink-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}

export function cleanupTempDirs(): void {
  if (process.env.KEEP_TMP === '1') {
    if (made.length) process.stderr.write(`KEEP_TMP=1: left ${made.join(' ')}\n`);
    return;
  }
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}
