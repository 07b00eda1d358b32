export * from './clock.ts';
export * from './demo.ts';
export * from './display.ts';
export * from './world.ts';
