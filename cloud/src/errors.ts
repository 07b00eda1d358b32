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
} as const satisfies Catalogue;

export type CloudErrorCode = keyof typeof CLOUD_ERRORS;
export const cloudError = errorFactory(CLOUD_ERRORS);
