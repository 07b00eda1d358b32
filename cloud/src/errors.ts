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
  CLOUD_ERR_PAY_SIGNATURE: {
    message: 'payment notification from {provider} refused: {reason}',
    fix: 'the provider must sign timestamp\\nnonce\\nbody\\n with the key configured under payments.providers.{provider}; check the key and the clock (docs/vending.md)',
    status: 401,
  },
  CLOUD_ERR_PAY_AMOUNT: {
    message: 'payment notification for order {orderId} has amount {got} {currency}, the order is {expected}',
    fix: 'a notification whose amount differs from the order is a false notification: the order is not paid; check the provider account',
  },
  CLOUD_ERR_PAY_PROVIDER: {
    message: 'payment provider "{provider}" is not configured',
    fix: 'add it under payments.providers in the cloud config, or use the notify URL of a configured provider',
    status: 404,
  },
  CLOUD_ERR_PAY_NOTIFICATION: {
    message: 'payment notification from {provider} is malformed: {reason}',
    fix: 'the body must be a TRANSACTION.SUCCESS notification as in docs/vending.md',
  },
  CLOUD_ERR_PAY_REFUND: {
    message: 'refund {refundNo} of order {orderId} failed: {reason}',
    fix: 'the sweeper retries with the same refund number; check the provider if it keeps failing',
    status: 502,
  },
  CLOUD_ERR_ORDER_UNKNOWN: {
    message: 'order "{orderId}" is unknown',
    fix: 'the order must be created (POST /api/v1/orders) before it is paid; check out_trade_no',
    status: 404,
  },
  CLOUD_ERR_ORDER_STATE: {
    message: 'order {orderId} cannot {step} in state {state}',
    fix: 'see the order state machine in docs/vending.md; the order was left unchanged',
    status: 409,
  },
  CLOUD_ERR_GATEWAY_REVOKED: {
    message: 'gateway "{gateway}" is revoked: {reason}',
    fix: 'a revoked gateway never connects again; register the replacement box under a new gateway id (docs/fleet-provisioning.md)',
    status: 409,
  },
  CLOUD_ERR_CERT_REFUSED: {
    message: 'client certificate of "{client}" refused: {reason}',
    fix: 'use the certificate the cloud issued last for this gateway (POST /api/v1/gateways/:id/certificate), signed by the cloud CA and not rotated or revoked',
    status: 401,
  },
  CLOUD_ERR_SHADOW_VERSION: {
    message:
      'shadow {target} is at desired version {current}, the change was made against version {expected}',
    fix: 'read the shadow again (GET /api/v1/shadows/...), merge your change into the current desired and send it with that version [SHADOW-VERSION-1]',
    status: 409,
  },
  CLOUD_ERR_ROLLOUT_STATE: {
    message: 'rollout {id} cannot {action} in state {state}',
    fix: 'see the rollout state machine in docs/fleet-shadows-rollouts.md; the rollout was left unchanged',
    status: 409,
  },
  CLOUD_ERR_ROLLOUT_SPEC: {
    message: 'rollout is invalid: {reason}',
    fix: 'correct the rollout body as described in docs/fleet-shadows-rollouts.md',
    status: 400,
  },
  CLOUD_ERR_WEBHOOK_DELIVERY: {
    message: 'alert webhook delivery to {url} failed (attempt {attempts}): {reason}',
    fix: 'make the receiver answer 2xx to a signed POST (docs/fleet-alerts-dashboard.md); deliveries are retried with back-off, then marked failed (GET /api/v1/alerts/deliveries)',
    status: 502,
  },
  CLOUD_ERR_CAB_NO_AGREEMENT: {
    message: 'member "{memberId}" has no active payment agreement for cabinets',
    fix: 'the member must sign a deduction agreement first (PUT /api/v1/cabinet/agreements/{memberId}); the cabinet stays locked',
    status: 403,
  },
  CLOUD_ERR_CAB_PROVIDER: {
    message: 'payment provider "{provider}" cannot charge agreements',
    fix: 'configure an agreement-capable provider client for cabinets, or change the member agreement provider',
    status: 409,
  },
  CLOUD_ERR_MEMBER_UNKNOWN: {
    message: 'member "{memberId}" not found (never created, or erased)',
    fix: 'search members by one of their ids (GET /api/v1/members?idType=&value=); an erased member is gone for good',
    status: 404,
  },
  CLOUD_ERR_MEMBER_ID: {
    message: 'member id {idType}="{value}" refused: {reason}',
    fix: 'send a real identifier of a known type (docs/members.md "Identity"); empty, placeholder and test values never link anything',
    status: 400,
  },
  CLOUD_ERR_MEMBER_GRAPH: {
    message: 'identity component of {size} ids is larger than the limit {max}',
    fix: 'a shared id (a kiosk device, a staff phone) is linking unrelated members: add it to the junk list or lower its cap (docs/members.md)',
    status: 409,
  },
  CLOUD_ERR_RULE_INVALID: {
    message: 'rule is invalid: {errors}',
    fix: 'correct the named fields; the rule schema is in docs/members.md "Rules" and at /docs',
    status: 400,
  },
  CLOUD_ERR_COUPON_TEMPLATE: {
    message: 'coupon template is invalid: {errors}',
    fix: 'correct the named fields (docs/members.md "Coupons")',
    status: 400,
  },
  CLOUD_ERR_COUPON_NOT_APPLICABLE: {
    message: 'coupon {couponId} cannot be applied: {reason}',
    fix: 'use a coupon of this member that is issued, not expired, and valid for this store and these SKUs, or order without one',
    status: 409,
  },
  CLOUD_ERR_VISION_PHOTO: {
    message: 'enrolment photo refused: {reason}',
    fix: "send the member's own photo (JPEG or PNG, base64) showing exactly one face, frontal, at least 48 px wide",
    status: 400,
  },
  CLOUD_ERR_VISION_CONSENT: {
    message: 'no separate face-recognition consent recorded for member {memberId}',
    fix: 'record the consent (time and the notice text the member accepted) in the enrolment request; without it nothing is stored',
    status: 400,
  },
  CLOUD_ERR_PAYMENT_UNAVAILABLE: {
    message: 'payment provider {provider} {op} failed: {reason}',
    fix: 'the provider answered 5xx/429 or could not be reached; the sweeper retries later with the same numbers — check payments.provider.baseUrl and the provider status if it persists',
    status: 502,
  },
  CLOUD_ERR_PAYMENT_TIMEOUT: {
    message: 'payment provider {provider} {op} did not answer within {timeoutMs} ms',
    fix: 'the call may or may not have taken effect; the sweeper retries with the same out_trade_no / out_refund_no (idempotent). Raise payments.provider.timeoutMs if the provider is slow',
    status: 504,
  },
  CLOUD_ERR_PAYMENT_SIGNATURE: {
    message: 'payment provider {provider} {op} answer refused: {reason}',
    fix: 'the answer was not signed with the provider key (payments.provider.providerKey, else payments.providers.{provider}.key); check the key, its serial and the clock — the answer is ignored and the call retried',
    status: 502,
  },
  CLOUD_ERR_PAYMENT_AUTH: {
    message: 'payment provider {provider} refused our {op} request signature: {reason}',
    fix: 'check payments.provider.mchid, merchantKey, algorithm and merchantSerial against the merchant account, and the clock',
    status: 502,
  },
  CLOUD_ERR_PAYMENT_REJECTED: {
    message: 'payment provider {provider} refused {op} ({status} {code}): {reason}',
    fix: 'the provider named what is wrong with the request (amount, order number, state); the order is left as it was and retried with backoff',
    status: 502,
  },
  CLOUD_ERR_PAYMENT_RESPONSE: {
    message: 'payment provider {provider} {op} answer is malformed: {reason}',
    fix: 'the provider API answered something other than the documented WeChat Pay v3 shape (docs/vending.md "Provider adapter"); check payments.provider.baseUrl',
    status: 502,
  },
} as const satisfies Catalogue;

export type CloudErrorCode = keyof typeof CLOUD_ERRORS;
export const cloudError = errorFactory(CLOUD_ERRORS);
