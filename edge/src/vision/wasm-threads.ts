import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

/**
 * Lets tfjs-backend-wasm's threaded SIMD build run in a Node worker thread
 * [VISION-RUNTIME-2]. tfjs 4.22 switches wasm threads off in Node (tensorflow/tfjs#3830):
 * its emscripten glue supports Node (it starts its pthreads as worker_threads), but tfjs
 * hands the glue two scripts as Blobs, which Node's Worker cannot load:
 *  - the pthread worker script (a Blob URL from URL.createObjectURL), and
 *  - the module factory (`var WasmBackendModuleThreadedSimd = ...`), posted to each
 *    pthread as a Blob; its free variables from the tfjs bundle are defined in a preamble.
 * This shim writes both to files in a private temp directory and hands out paths instead.
 * Also, the backend sizes its XNNPACK pool as min(asked, logical cores / 2) — it assumes
 * hyper-threading — so on a 2-vCPU gateway it would stay at one thread; while the backend
 * initialises, `os.cpus()` of this thread reports `threads × 2` entries.
 *
 * Call in the thread that runs inference, before `tf.setBackend('wasm')`; call the returned
 * function once the backend is ready (it restores Blob, URL.createObjectURL and os.cpus).
 */
export function enableWasmThreadsInNode(threads: number): () => void {
  const dir = join(tmpdir(), `storelink-wasm-${process.pid}-${Math.random().toString(36).slice(2)}`);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const mainPath = join(dir, 'wasm-main.cjs');
  const texts = new WeakMap<Blob, string>();
  const RealBlob = globalThis.Blob;
  class TextBlob extends RealBlob {
    constructor(...args: ConstructorParameters<typeof Blob>) {
      super(...args);
      const parts = args[0];
      if (parts?.every((p) => typeof p === 'string')) {
        const text = (parts as string[]).join('');
        texts.set(this, text);
        if (text.startsWith('var WasmBackendModuleThreadedSimd'))
          writeFileSync(mainPath, mainPreamble(mainPath) + text);
      }
    }
  }
  globalThis.Blob = TextBlob as typeof Blob;
  const realCreate = URL.createObjectURL;
  URL.createObjectURL = (obj: Blob) => {
    const text = texts.get(obj);
    if (text === undefined || !text.includes('ENVIRONMENT_IS_PTHREAD')) return realCreate.call(URL, obj);
    const p = join(dir, 'wasm-pthread.cjs');
    writeFileSync(p, workerPreamble(mainPath) + text);
    return p;
  };
  // The thread's own `os` module object (each worker thread has its own builtins).
  const os = createRequire(import.meta.url)('node:os') as typeof import('node:os');
  const realCpus = os.cpus;
  os.cpus = () => {
    const one = realCpus()[0]!;
    return Array.from({ length: threads * 2 }, () => one);
  };
  return () => {
    globalThis.Blob = RealBlob;
    URL.createObjectURL = realCreate;
    os.cpus = realCpus;
    // Every pthread (a pool of 8, created while the backend initialises) has read both files.
    rmSync(dir, { recursive: true, force: true });
  };
}

/** The pthread script loads the factory from its file (it is handed a Blob it cannot open). */
function workerPreamble(mainPath: string): string {
  return `URL.createObjectURL = () => ${JSON.stringify(mainPath)}; URL.revokeObjectURL = () => {};\n`;
}

/** Free variables of the factory inside the tfjs node bundle, defined for the pthread's indirect eval. */
function mainPreamble(mainPath: string): string {
  return [
    "globalThis.require$$0 = require('fs');",
    "globalThis.require$$1 = require('path');",
    "globalThis.require$$3 = require('perf_hooks');",
    "globalThis.require$$4 = require('os');",
    'globalThis.commonjsGlobal = globalThis;',
    `globalThis._scriptDir = globalThis.__filename = ${JSON.stringify(mainPath)};`,
    `globalThis.__dirname = ${JSON.stringify(dirname(mainPath))};`,
    '',
  ].join('\n');
}
