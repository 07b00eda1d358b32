export * from './debounce.ts';
export * from './line.ts';
export * from './onoff.ts';
