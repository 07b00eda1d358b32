import { runStoreSuite } from './conformance.ts';
import { openStore } from './index.ts';

/** The conformance suite on PGlite in a worker thread (the default driver for the cloud). */
runStoreSuite('pglite (memory, worker thread)', () => openStore({ kind: 'pglite', worker: true }));
