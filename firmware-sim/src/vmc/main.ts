/**
 * The simulated vending controller board as its own process, on a serial device path:
 *
 *   npx tsx firmware-sim/src/vmc/main.ts --path /tmp/x/b --seed 7 --slots 11:300:10,12:150:10
 *
 * Across processes the edge cannot watch an in-process drop line, so the board reports
 * drops over the link (DIAG DROP; run the driver with `dropOverSerial: true`).
 * Control on stdin, one command a line: `fault <kind> [count] [ms]`, `door open|close`,
 * `stock <item> <count>`, `status`. Events go to stdout as JSON lines.
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { type FaultKind, type SlotConfig, VmcBoard } from './board.ts';

const { values } = parseArgs({
  options: {
    path: { type: 'string' },
    seed: { type: 'string', default: '1' },
    slots: { type: 'string', default: '1:250:10' },
    'poll-ms': { type: 'string', default: '10' },
    'motor-ms': { type: 'string', default: '60' },
    'response-timeout-ms': { type: 'string', default: '100' },
    'temperature-every-ms': { type: 'string', default: '1000' },
  },
});

if (!values.path) {
  process.stderr.write('usage: main.ts --path <serial device> [--seed n] [--slots item:price:stock,...]\n');
  process.exit(2);
}

const slots: SlotConfig[] = (values.slots ?? '').split(',').map((s) => {
  const [item, priceCents, stock] = s.split(':').map(Number);
  return { item: item ?? 1, priceCents: priceCents ?? 0, stock: stock ?? 0 };
});

const out = (o: object): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

const board = new VmcBoard({
  path: values.path,
  slots,
  seed: Number(values.seed),
  pollMs: Number(values['poll-ms']),
  motorMs: Number(values['motor-ms']),
  responseTimeoutMs: Number(values['response-timeout-ms']),
  temperatureEveryMs: Number(values['temperature-every-ms']),
  dropOverSerial: true,
});
for (const ev of ['link', 'reader', 'session', 'motor', 'power', 'abort'] as const) {
  board.on(ev, (data: object) => out({ ev, ...data }));
}
board.on('error', (e: Error) => out({ ev: 'error', message: e.message }));

createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, a, b, c] = line.trim().split(/\s+/);
  if (cmd === 'fault' && a) {
    board.fault(a as FaultKind, {
      ...(b ? { count: Number(b) } : {}),
      ...(c ? { ms: Number(c) } : {}),
    });
    out({ ev: 'fault', kind: a });
  } else if (cmd === 'door') {
    board.setDoor(a === 'open');
  } else if (cmd === 'stock' && a && b) {
    const slot = board.slots.get(Number(a));
    if (slot) slot.stock = Number(b);
  } else if (cmd === 'status') {
    out({ ev: 'status', counters: board.counters, slots: [...board.slots.values()], link: board.linkOpen });
  }
});

const stop = async (): Promise<void> => {
  await board.stop();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

await board.start();
out({ ev: 'started', path: values.path });
