/**
 * Baseline broker for `bench ingest`: plain aedes with in-memory persistence and no
 * outbox, run as its own process like the edge agent, so the ratio compares the edge's
 * full QoS1 path (validate, envelope, outbox append, then PUBACK) against the cheapest
 * QoS1 path the same broker library can offer on this machine.
 * Usage: tsx bench/raw-aedes.ts PORT
 */
import { createServer } from 'node:net';
import { Aedes } from 'aedes';

const port = Number(process.argv[2] ?? 1883);
const broker = await Aedes.createBroker({
  // Same check shape as the edge (username + password present), without a lookup cost worth measuring.
  authenticate: (_client, username, password, done) => done(null, Boolean(username && password)),
});
const server = createServer(broker.handle);
server.listen(port, '127.0.0.1', () => process.stderr.write(`raw aedes on ${port}\n`));
const shutdown = () => {
  server.close();
  broker.close(() => process.exit(0));
};
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);
