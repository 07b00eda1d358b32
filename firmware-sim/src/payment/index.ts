export * from './buyer.ts';
export * from './heap.ts';
export * from './provider.ts';
export * from './agreement.ts';
