export * from './buyer.ts';
export * from './heap.ts';
export * from './provider.ts';
