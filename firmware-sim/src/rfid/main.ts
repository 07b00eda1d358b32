/**
 * The simulated RFID reader as its own process, on a serial device path:
 *
 *   npx tsx firmware-sim/src/rfid/main.ts --path /tmp/x/reader --framing r2000 --seed 7 \
 *     --tags e280...01:1,e280...02:2 --miss-rate 0.1 --noise-rate 0.05 --crc-error-rate 0.02
 *   (or the `storelink-rfid-sim` bin with the same options)
 *
 * Control on stdin, one command a line:
 *   add <epc> <antenna> [rssi]   remove <epc>   antenna <n> fault|ok
 *   miss|noise|crc|silent <rate>  churn <ms> (a random tag leaves and a new one arrives every ms; 0 = off)
 *   status
 * Events go to stdout as JSON lines ({"ev":"started"}, {"ev":"status",...}, {"ev":"link",...}).
 */
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { mulberry32 } from '../rng.ts';
import { type Framing, RfidReaderSim } from './reader.ts';

const { values } = parseArgs({
  options: {
    path: { type: 'string' },
    framing: { type: 'string', default: 'chafon' },
    seed: { type: 'string', default: '1' },
    antennas: { type: 'string', default: '4' },
    tags: { type: 'string', default: '' },
    'miss-rate': { type: 'string', default: '0' },
    'noise-rate': { type: 'string', default: '0' },
    'crc-error-rate': { type: 'string', default: '0' },
    'silent-rate': { type: 'string', default: '0' },
    'tags-per-frame': { type: 'string', default: '4' },
    'baud-rate': { type: 'string' },
    churn: { type: 'string', default: '0' },
    'empty-as-no-tag': { type: 'boolean', default: false },
  },
});

if (!values.path || (values.framing !== 'chafon' && values.framing !== 'r2000')) {
  process.stderr.write(
    'usage: main.ts --path <serial device> --framing chafon|r2000 [--seed n] [--tags epc:antenna,...] [--miss-rate r]\n',
  );
  process.exit(2);
}

const out = (o: object): void => {
  process.stdout.write(`${JSON.stringify(o)}\n`);
};

const sim = new RfidReaderSim({
  path: values.path,
  framing: values.framing as Framing,
  seed: Number(values.seed),
  antennas: Number(values.antennas),
  missRate: Number(values['miss-rate']),
  noiseRate: Number(values['noise-rate']),
  crcErrorRate: Number(values['crc-error-rate']),
  silentRate: Number(values['silent-rate']),
  tagsPerFrame: Number(values['tags-per-frame']),
  emptyAsNoTag: values['empty-as-no-tag'] === true,
  ...(values['baud-rate'] ? { baudRate: Number(values['baud-rate']) } : {}),
});
for (const spec of (values.tags ?? '').split(',').filter(Boolean)) {
  const [epc, antenna, rssi] = spec.split(':');
  if (epc) sim.addTag(epc, Number(antenna ?? 1), rssi ? Number(rssi) : undefined);
}
sim.on('link', (l) => out({ ev: 'link', ...l }));

// Tags that come and go on their own: every `churn` ms one random tag leaves and a new one arrives.
const rng = mulberry32(Number(values.seed) ^ 0x5eed);
let churnTimer: NodeJS.Timeout | undefined;
let churned = 0;
const setChurn = (ms: number): void => {
  clearInterval(churnTimer);
  if (ms <= 0) return;
  churnTimer = setInterval(() => {
    const epcs = [...sim.tags.keys()];
    const gone = epcs[Math.floor(rng() * epcs.length)];
    if (gone) {
      sim.removeTag(gone);
      out({ ev: 'tag', action: 'removed', epc: gone });
    }
    const epc = `e2c0${(++churned).toString(16).padStart(20, '0')}`;
    const antenna = 1 + Math.floor(rng() * Number(values.antennas));
    sim.addTag(epc, antenna);
    out({ ev: 'tag', action: 'added', epc, antenna });
  }, ms);
};
setChurn(Number(values.churn));

const status = () => ({
  ev: 'status',
  counters: sim.counters,
  tags: [...sim.tags.values()],
  faultyAntennas: [...sim.faultyAntennas],
  link: sim.linkOpen,
});

createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, a, b, c] = line.trim().split(/\s+/);
  switch (cmd) {
    case 'add':
      if (a) sim.addTag(a, Number(b ?? 1), c ? Number(c) : undefined);
      break;
    case 'remove':
      if (a) sim.removeTag(a);
      break;
    case 'antenna':
      sim.setAntennaFault(Number(a), b === 'fault');
      break;
    case 'miss':
      sim.missRate = Number(a);
      break;
    case 'noise':
      sim.noiseRate = Number(a);
      break;
    case 'crc':
      sim.crcErrorRate = Number(a);
      break;
    case 'silent':
      sim.silentRate = Number(a);
      break;
    case 'churn':
      setChurn(Number(a));
      break;
    case 'status':
      break;
    default:
      out({ ev: 'error', message: `unknown command: ${line}` });
      return;
  }
  out(status());
});

const stop = async (): Promise<void> => {
  clearInterval(churnTimer);
  await sim.stop();
  process.exit(0);
};
process.on('SIGTERM', () => void stop());
process.on('SIGINT', () => void stop());

await sim.start();
out({ ev: 'started', path: values.path, framing: values.framing });
