/**
 * Process entry: `storelink-edge --config edge.json` (plus STORELINK_EDGE_* overrides,
 * see config.ts). SIGINT/SIGTERM close the agent in order; a second signal exits at once.
 */
import { parseArgs } from 'node:util';
import { isStorelinkError } from '@storelink/protocols';
import { startEdge } from './agent.ts';
import { type EdgeConfig, loadConfig } from './config.ts';

const { values } = parseArgs({ options: { config: { type: 'string', short: 'c' } } });

let config: EdgeConfig;
try {
  config = loadConfig(values.config ?? process.env.STORELINK_EDGE_CONFIG);
} catch (e) {
  const err = e as Error & { code?: string; fix?: string };
  process.stderr.write(`${err.code ?? 'ERROR'}: ${err.message}\n${err.fix ? `fix: ${err.fix}\n` : ''}`);
  process.exit(2);
}

try {
  const agent = await startEdge(config);
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) process.exit(1);
    stopping = true;
    process.stderr.write(`${signal}: stopping storelink-edge\n`);
    agent.close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`close failed: ${(e as Error).message}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
} catch (e) {
  const err = e as Error & { fix?: string };
  process.stderr.write(
    isStorelinkError(err)
      ? `${err.code}: ${err.message}\nfix: ${err.fix}\n`
      : `${err.stack ?? err.message}\n`,
  );
  process.exit(1);
}
