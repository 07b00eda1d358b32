export * as cabinet from './cabinet.ts';
export * from './canonical.ts';
export * from './commands.ts';
export * from './envelope.ts';
export * from './errors.ts';
export * as esl from './esl.ts';
export * from './events.ts';
export * as fleet from './fleet.ts';
export * from './ids.ts';
export * from './members.ts';
export * as rfid from './rfid/index.ts';
export * as mdb from './mdb/index.ts';
export * from './signing.ts';
export * from './topics.ts';
export * from './validate.ts';
export * from './vending.ts';
export * as vision from './vision.ts';

/** Protocol limits shared by edge and cloud. */
export const LIMITS = {
  /** Largest device payload the edge accepts (bytes). */
  devicePayloadBytes: 16 * 1024,
  /** Largest uplink batch the cloud accepts (bytes). */
  uplinkBatchBytes: 1024 * 1024,
} as const;
