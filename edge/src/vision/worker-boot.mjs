// The vision worker's entry: the sources are TypeScript run through tsx (as bin/storelink-edge.js).
// tfjs-backend-wasm installs process-wide uncaughtException/unhandledRejection rethrowers
// when it loads; inside this worker they affect only the worker, never the agent.
import { register } from 'tsx/esm/api';

register();
await import('./worker.ts');
