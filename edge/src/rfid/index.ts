export * from './agent-wiring.ts';
export * from './api.ts';
export * from './driver.ts';
