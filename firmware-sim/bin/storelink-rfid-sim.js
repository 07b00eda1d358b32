#!/usr/bin/env node
// The simulated RFID reader on a serial device (firmware-sim/src/rfid/main.ts); runs the TypeScript sources (tsx).
import { register } from 'tsx/esm/api';

register();
await import('../src/rfid/main.ts');
