export * as chafon from './chafon.ts';
export * from './events.ts';
export * as r2000 from './r2000.ts';
export { hexBytes, type ParsedRfidFrame, type ParseResult } from './stream.ts';
