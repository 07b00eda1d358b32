export * from './cabinet.ts';
