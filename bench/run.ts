/**
 * Benchmarks: `npm run bench -- NAME [--json] [options]` (`--help` per scenario). Each
 * reports against a baseline measured in the same run (these machines are noisy) and
 * prints one JSON object as the last stdout line. See docs/performance.md.
 */
import { dispenseBench } from './dispense.ts';
import { eslBench } from './esl.ts';
import { membersBench } from './members.ts';
import { fleetBench } from './fleet.ts';
import { dispatch } from './lib.ts';
import { rfidBench } from './rfid.ts';
import { drain } from './scenarios/drain.ts';
import { shadowsBench } from './shadows.ts';
import { ingest } from './scenarios/ingest.ts';
import { visionBench } from './vision.ts';

await dispatch('bench', [
  eslBench,
  dispenseBench,
  drain,
  ingest,
  fleetBench,
  rfidBench,
  visionBench,
  shadowsBench,
  membersBench,
]);
