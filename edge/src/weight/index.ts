export * from './lane.ts';
export * from './planogram.ts';
export * from './shelf.ts';
