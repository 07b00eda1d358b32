import { mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'esbuild';

const ROOT = resolve(import.meta.dirname, '../..');

/**
 * The edge agent as one ESM file (its own sources and `@storelink/protocols` bundled,
 * npm packages left external), for harnesses that restart the edge hundreds of times:
 * the crash torture kills and restarts it 200 times, and loading ~100 TypeScript modules
 * through tsx on every start cost 1.5-6 s of the run per kill on this 2-core machine.
 * Written under `edge/.bundle/` so that `import.meta.url`-relative paths (`../package.json`)
 * and node_modules resolution behave as they do from `edge/src/`.
 */
export async function buildEdgeBundle(): Promise<string> {
  const dir = join(ROOT, 'edge/.bundle');
  mkdirSync(dir, { recursive: true });
  const outfile = join(dir, `main-${process.pid}.mjs`);
  await build({
    entryPoints: [join(ROOT, 'edge/src/main.ts')],
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    packages: 'external',
    alias: { '@storelink/protocols': join(ROOT, 'protocols/src/index.ts') },
    outfile,
    logLevel: 'warning',
  });
  return outfile;
}
