export * from './config.ts';
export * from './device.ts';
export * from './fleet.ts';
export * from './fridge.ts';
export * from './loadgen.ts';
export * from './rng.ts';
export * from './vending.ts';
