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

/** A mark for `cleanupTempDirs(mark)`: only dirs made after it are removed. */
export function tempMark(): number {
  return made.length;
}

/** Removes the temp dirs made since `mark` (default: all); a dir that cannot go (a busy mount) is reported, not thrown. */
export function cleanupTempDirs(mark = 0): void {
  if (process.env.KEEP_TMP === '1') {
    if (made.length > mark) process.stderr.write(`KEEP_TMP=1: left ${made.slice(mark).join(' ')}\n`);
    return;
  }
  for (const d of made.splice(mark)) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch (e) {
      process.stderr.write(`could not remove ${d}: ${(e as Error).message}\n`);
    }
  }
}
