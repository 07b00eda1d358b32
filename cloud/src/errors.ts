import { type Catalogue, errorFactory } from '@storelink/protocols';

/** Cloud error catalogue. Every code is listed in docs/errors.md (a test checks). */
export const CLOUD_ERRORS = {
  CLOUD_ERR_CONFIG: {
    message: 'configuration is invalid: {errors}',
    fix: 'correct the named fields in the config file or the STORELINK_CLOUD_* environment variables',
  },
  CLOUD_ERR_AUTH: {
    message: 'gateway "{username}" failed authentication',
    fix: 'use the gateway id as MQTT username and the password the cloud registered for it',
    status: 401,
  },
  CLOUD_ERR_ACL: {
    message: 'client "{client}" may not {action} "{topic}"',
    fix: 'a gateway publishes only to sl/v1/{site}/{itsId}/(up|state|hb|shadow/reported) and reads its own ack, cmd and shadow/desired',
    status: 403,
  },
  CLOUD_ERR_BATCH_REJECTED: {
    message: 'uplink batch from {gateway} rejected: {reason}',
    fix: 'the gateway must send batches that match docs/protocol.md; the batch is not acknowledged so nothing is lost',
  },
  CLOUD_ERR_NOT_FOUND: {
    message: '{what} "{id}" not found',
    fix: 'check the id; list the collection to see what exists',
    status: 404,
  },
  CLOUD_ERR_STORE: {
    message: 'store operation failed: {reason}',
    fix: 'check the database connection and its logs',
    status: 503,
  },
  CLOUD_ERR_MIGRATION: {
    message: 'store migration {version} ({name}) failed: {reason}',
    fix: 'the database was left at the previous version; fix the cause named in the message and restart',
    status: 503,
  },
  CLOUD_ERR_BAD_REQUEST: {
    message: 'request is invalid: {errors}',
    fix: 'correct the fields named in the message; the OpenAPI document at /docs describes every route',
  },
  CLOUD_ERR_CONFLICT: {
    message: '{what} "{id}" already exists: {reason}',
    fix: 'use another id, or change the existing one instead of creating it again',
    status: 409,
  },
  CLOUD_ERR_STATE_REJECTED: {
    message: '{kind} message from {gateway} ignored: {reason}',
    fix: 'the gateway must publish GatewayState / Heartbeat messages as in docs/protocol.md on its own topics',
  },
  CLOUD_ERR_BROKER: {
    message: 'MQTT broker unavailable for {client}: {reason}',
    fix: 'check that the broker in the config (broker.url or the embedded broker port) is reachable and the service credentials are right',
    status: 503,
  },
  CLOUD_ERR_COMMAND_PUBLISH: {
    message: 'command {id} was stored but could not be published: {reason}',
    fix: 'check the broker connection; the command keeps status "pending" and can be issued again',
    status: 503,
  },
  CLOUD_ERR_INTERNAL: {
    message: 'internal error: {reason}',
    fix: 'this is a bug; the cloud log has the stack trace under the same request id',
    status: 500,
  },
  CLOUD_ERR_SIGNING_KEY: {
    message: 'command signing key {file} is unusable: {reason}',
    fix: 'point signing.privateKeyFile at a PEM Ed25519 private key, or at a missing file to have one generated',
  },
} as const satisfies Catalogue;

export type CloudErrorCode = keyof typeof CLOUD_ERRORS;
export const cloudError = errorFactory(CLOUD_ERRORS);
