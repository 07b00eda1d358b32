/**
 * Torture runs against real processes: `npm run torture -- NAME [--json] [options]`
 * (`npm run torture -- NAME --help` lists a scenario's options). The last stdout line is
 * one JSON object; the exit code is 1 when a must-be-zero field (lost, duplicates,
 * reordered, ...) is not zero.
 */
import { dispatch } from './lib.ts';
import { cabinet } from './torture-cabinet.ts';
import { crash } from './scenarios/crash.ts';
import { diskfull } from './scenarios/diskfull.ts';
import { outage } from './scenarios/outage.ts';
import { powerloss } from './scenarios/powerloss.ts';
import { coupons } from './torture-coupons.ts';
import { vending } from './torture-vending.ts';

await dispatch('torture', [crash, diskfull, outage, powerloss, vending, cabinet, coupons]);
