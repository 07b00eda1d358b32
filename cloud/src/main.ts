/**
 * Process entry: `storelink-cloud [--config file.json]`. Configuration errors print the
 * coded message and exit 2; SIGINT/SIGTERM close everything cleanly (in-flight batches
 * are committed and acknowledged first) and exit 0.
 */
import { isStorelinkError } from '@storelink/protocols';
import pino from 'pino';
import { loadCloudConfig } from './config.ts';
import { startCloud } from './index.ts';

function parseArgs(argv: string[]): { config?: string } {
  const out: { config?: string } = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--config' || a === '-c') out.config = argv[++i];
    else if (a.startsWith('--config=')) out.config = a.slice('--config='.length);
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: storelink-cloud [--config file.json]\n' +
          'Environment overrides: STORELINK_CLOUD_* (see docs/architecture.md, "Cloud").\n',
      );
      process.exit(0);
    } else {
      process.stderr.write(`storelink-cloud: unknown argument ${a}\n`);
      process.exit(2);
    }
  }
  return out;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  let config: ReturnType<typeof loadCloudConfig>;
  try {
    config = loadCloudConfig(args.config ?? process.env.STORELINK_CLOUD_CONFIG);
  } catch (e) {
    const err = e as Error & { code?: string; fix?: string };
    process.stderr.write(`${err.code ?? 'ERROR'}: ${err.message}\n${err.fix ? `fix: ${err.fix}\n` : ''}`);
    process.exit(2);
  }
  const logger = pino({ level: config.log.level, name: 'storelink-cloud' });
  const app = await startCloud(config, { logger });
  // One line on stdout a supervisor or test harness can wait for.
  logger.info({ httpUrl: app.httpUrl, brokerUrl: app.brokerUrl, ready: true }, 'ready');

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    logger.info({ signal }, 'stopping');
    const force = setTimeout(() => {
      logger.error('did not stop within 10 s, exiting');
      process.exit(1);
    }, 10_000);
    force.unref();
    app.close().then(
      () => process.exit(0),
      (e: unknown) => {
        logger.error({ err: e }, 'error while stopping');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

main().catch((e: unknown) => {
  const code = isStorelinkError(e) ? e.code : 'CLOUD_ERR_INTERNAL';
  process.stderr.write(`${code}: ${(e as Error).message}\n`);
  if (isStorelinkError(e)) process.stderr.write(`fix: ${e.fix}\n`);
  process.exit(1);
});
