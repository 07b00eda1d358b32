export * from './clock.ts';
export * from './world.ts';
