import { parseArgs } from 'node:util';
import pino from 'pino';
import { fleetSpecFromConfig, loadSimConfig } from './config.ts';
import { startSimFleet } from './fleet.ts';

/**
 * `storelink-sim --config sim.json [--status-ms 5000]`: runs simulated devices against
 * an edge agent's local broker and prints a short status line every few seconds.
 * SIGINT/SIGTERM disconnect cleanly. Exit codes: 0 stopped, 2 bad usage or config.
 */
const log = pino({ name: 'storelink-sim' });

function usage(msg: string): never {
  log.error(msg);
  process.stderr.write(`${msg}\nusage: storelink-sim --config sim.json [--status-ms 5000]\n`);
  process.exit(2);
}

let values: { config?: string; 'status-ms'?: string; help?: boolean };
try {
  ({ values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      'status-ms': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  }));
} catch (e) {
  usage((e as Error).message);
}
if (values.help) {
  process.stdout.write('usage: storelink-sim --config sim.json [--status-ms 5000]\n');
  process.exit(0);
}
if (!values.config) usage('--config is required');

let cfg: ReturnType<typeof loadSimConfig>;
try {
  cfg = loadSimConfig(values.config);
} catch (e) {
  usage((e as Error).message);
}

const statusMs = Number(values['status-ms'] ?? cfg.statusEveryMs ?? 5000);
if (!Number.isFinite(statusMs) || statusMs < 100) usage('--status-ms must be a number >= 100');

const fleet = startSimFleet(fleetSpecFromConfig(cfg));
log.info({ brokerUrl: cfg.brokerUrl, devices: cfg.devices.length }, 'simulated devices starting');
for (const d of fleet.devices) {
  // Log a device's connect failure once per distinct reason, not at every retry
  // (a fleet of hundreds against a stopped agent would flood the log).
  let lastReason = '';
  d.on('connectError', (err: Error) => {
    if (err.message === lastReason) return;
    lastReason = err.message;
    log.warn({ device: d.id, err: err.message }, 'connect failed; retrying');
  });
  d.on('connect', () => {
    if (lastReason) log.info({ device: d.id }, 'connected');
    lastReason = '';
  });
  d.on('edgeError', (e: unknown) => log.warn({ device: d.id, error: e }, 'edge reported an error'));
  d.on('alarm', (code: string, active: boolean) => log.info({ device: d.id, code, active }, 'alarm'));
}

const status = setInterval(() => {
  const s = fleet.stats();
  log.info(
    {
      connected: `${s.connected}/${s.devices}`,
      published: s.published,
      acked: s.acked,
      inflight: s.inflight,
      dropped: s.dropped,
      errorsReceived: s.errorsReceived,
      commands: s.commandsHandled,
      commandsFailed: s.commandsFailed,
      connectErrors: s.connectErrors,
    },
    'status',
  );
}, statusMs);

let stopping = false;
async function shutdown(signal: string) {
  if (stopping) return;
  stopping = true;
  clearInterval(status);
  log.info({ signal }, 'stopping');
  await fleet.stop();
  const s = fleet.stats();
  log.info({ published: s.published, acked: s.acked }, 'stopped');
  process.exit(0);
}
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('SIGTERM', () => void shutdown('SIGTERM'));
