export { type EdgeAgent, type EdgeStatus, type StartEdgeOptions, startEdge, VERSION } from './agent.ts';
export { hashDevicePassword } from './broker/auth.ts';
export {
  type DeviceConfig,
  type EdgeConfig,
  type EdgeConfigInput,
  EdgeConfigSchema,
  envVariables,
  loadConfig,
  parseConfig,
} from './config.ts';
export { EDGE_ERRORS, type EdgeErrorCode, edgeError } from './errors.ts';
export { build as buildHttp } from './http/index.ts';
export type { EdgeStore, KvStore, Outbox, OutboxStats, StoredEvent } from './outbox/types.ts';
