export * from './clock.ts';
export * from './demo.ts';
export * from './world.ts';
