import { type Catalogue, errorFactory } from '@storelink/protocols';

/** Edge error catalogue. Every code is listed in docs/errors.md (a test checks). */
export const EDGE_ERRORS = {
  EDGE_ERR_CONFIG: {
    message: 'configuration is invalid: {errors}',
    fix: 'correct the named fields in the config file or the STORELINK_EDGE_* environment variables',
  },
  EDGE_ERR_AUTH: {
    message: 'device "{username}" failed authentication',
    fix: 'use the device id as MQTT username and the password from the agent config',
    status: 401,
  },
  EDGE_ERR_ACL_PUBLISH: {
    message: 'device "{deviceId}" may not publish to "{topic}"',
    fix: 'a device publishes only under dev/{itsId}/evt/, dev/{itsId}/res/ and dev/{itsId}/state',
    status: 403,
  },
  EDGE_ERR_ACL_SUBSCRIBE: {
    message: 'device "{deviceId}" may not subscribe to "{topic}"',
    fix: 'a device subscribes only under dev/{itsId}/ (for example dev/{itsId}/cmd/#)',
    status: 403,
  },
  EDGE_ERR_OUTBOX_FULL: {
    message: 'outbox cannot store a {lane} event: {reason}',
    fix: 'restore the cloud link so the backlog drains, or give the outbox more disk',
    status: 507,
  },
  EDGE_ERR_OUTBOX_IO: {
    message: 'outbox write failed: {reason}',
    fix: 'check the data directory: disk space, permissions, file system errors',
    status: 500,
  },
  EDGE_ERR_OUTBOX_CORRUPT: {
    message: 'outbox store was damaged and repaired; lost {lostCount} events: {ranges}',
    fix: 'nothing to do for the agent; the loss is reported to the cloud as a gap',
    status: 500,
  },
  EDGE_ERR_CMD_REPLAY: {
    message: 'command {id} was already executed; returning its first result',
    fix: 'nothing: commands run at most once; issue a new command id to act again',
    status: 409,
  },
  EDGE_ERR_CMD_UNKNOWN_DEVICE: {
    message: 'command {id} targets unknown device "{device}"',
    fix: 'target a device listed in this gateway configuration',
    status: 404,
  },
  EDGE_ERR_CMD_TIMEOUT: {
    message: 'device "{device}" did not answer command {id} within {timeoutMs} ms',
    fix: 'check that the device is online and subscribed to dev/{device}/cmd/#',
    status: 504,
  },
  EDGE_ERR_CMD_INTERRUPTED: {
    message: 'command {id} was started but the agent stopped before it completed; its outcome is unknown',
    fix: 'check the device state, then issue a new command id if the action is still wanted',
    status: 500,
  },
  EDGE_ERR_CMD_FAILED: {
    message: 'command {id} failed at the edge: {reason}',
    fix: 'see the agent log for the cause; issue a new command id once it is fixed',
    status: 500,
  },
  EDGE_ERR_CMD_MALFORMED: {
    message: 'command message on {topic} is unusable: {reason}',
    fix: 'publish a signed CommandEnvelope as UTF-8 JSON (see docs/protocol.md)',
  },
  EDGE_ERR_VMC_PORT: {
    message: 'vending serial port {path} is unavailable: {reason}',
    fix: 'check the cable / USB adapter and the configured port path; the driver reopens it with backoff',
    status: 503,
  },
  EDGE_ERR_VMC_LINK_DOWN: {
    message: 'vending controller on {path} has not polled for {silentMs} ms',
    fix: 'check that the machine is powered and the MDB cable is seated; the driver waits for polls to resume',
    status: 503,
  },
  EDGE_ERR_VMC_NO_DROP: {
    message:
      'order {orderId}: controller reported VEND SUCCESS for slot {slot} but the drop sensor saw nothing (EJL)',
    fix: 'the payment must be refunded; check the slot for a jammed item and the drop sensor beam',
    status: 502,
  },
  EDGE_ERR_VMC_VEND_FAILED: {
    message: 'order {orderId}: vend of slot {slot} failed: {reason}',
    fix: 'the payment must be refunded; check the slot (empty, jammed motor) and the controller',
    status: 502,
  },
  EDGE_ERR_VMC_RESET_MID_VEND: {
    message:
      'order {orderId}: controller reset during the vend of slot {slot}; the outcome is treated as failed',
    fix: 'the payment is refunded; check the machine power supply and the slot',
    status: 502,
  },
  EDGE_ERR_VMC_TIMEOUT: {
    message: 'order {orderId}: no vend result within {deadlineMs} ms ({phase})',
    fix: 'check the controller link; an order that timed out before approval never dispensed',
    status: 504,
  },
  EDGE_ERR_VMC_DENIED: {
    message:
      'order {orderId}: controller asked to vend item {item} at {price}, order is slot {slot} at {priceCents}',
    fix: 'align the planogram (slot numbers and prices) between the cloud and the machine',
    status: 409,
  },
  EDGE_ERR_VMC_SLOT: {
    message: "order {orderId}: slot {slot} is not one of this machine's slots ({slots})",
    fix: 'align the planogram: the cloud order slot must be listed in the gateway config vending.slots',
    status: 400,
  },
  EDGE_ERR_VMC_REPLAY: {
    message: 'order {orderId} was already vended; returning its first outcome',
    fix: 'nothing: each payment dispenses at most once',
    status: 409,
  },
  EDGE_ERR_VMC_EXPIRED: {
    message: 'order {orderId} expired at {expiresAt} (now {now}); not vended',
    fix: 'nothing was dispensed; refund or issue a new dispense command',
    status: 410,
  },
  EDGE_ERR_VMC_INTERRUPTED: {
    message:
      'order {orderId} was started before a restart and its outcome is unknown; it is not vended again',
    fix: 'check the slot and the drop log; refund if the customer did not get the item',
    status: 500,
  },
  EDGE_ERR_VMC_OUT_OF_SEQUENCE: {
    message: 'controller sent {command} in reader state {state}',
    fix: 'the reader answered OUT OF SEQUENCE and the controller resets it; persistent cases point to a controller firmware bug',
  },
  EDGE_ERR_SHADOW_STALE: {
    message: 'shadow version {version} for {target} is stale: version {applied} is already applied',
    fix: 'nothing to do: a newer desired shadow already reached this gateway [SHADOW-VERSION-1]; change the shadow again to apply something else',
    status: 409,
  },
  EDGE_ERR_SHADOW_KEY: {
    message: 'shadow of {target} has a key this gateway cannot apply: {reason}',
    fix: 'use only the gateway keys listed in docs/fleet-shadows-rollouts.md; nothing of this version was applied',
    status: 400,
  },
  EDGE_ERR_SHADOW_APPLY: {
    message: 'shadow version {version} for {target} was not fully applied: {reason}',
    fix: 'see the device code in the message (BAD_IMAGE, BOOT_FAILED, UNKNOWN_KEY, timeout = device offline); change the desired shadow or bring the device back',
    status: 502,
  },
  EDGE_ERR_VISION_FRAME: {
    message: 'camera {camera} frame refused ({reason}): {detail}',
    fix: 'send one baseline or progressive JPEG per message, 32..4096 px per side, at most 2 MiB; the pipeline skips this frame and carries on',
    status: 400,
  },
  EDGE_ERR_VISION_GALLERY: {
    message: 'face gallery command refused: {reason}',
    fix: 'configure vision.galleryKey (or galleryKeyFile) with the key the cloud issued for this gateway; nothing of this command was applied',
    status: 400,
  },
  EDGE_ERR_VISION_MODEL: {
    message: 'vision models failed to load: {reason}',
    fix: 'check that @vladmandic/human (models/) and @tensorflow/tfjs-backend-wasm (dist/*.wasm) are installed; recognition stays off until they load',
    status: 500,
  },
  EDGE_ERR_CAB_BUSY: {
    message: 'cabinet is busy with session {running}; session {requested} refused',
    fix: 'wait until the running session closes (door closed and counted), then scan again',
    status: 409,
  },
  EDGE_ERR_CAB_SHELF_READING: {
    message: 'shelf.reading from {device} refused: {reason}',
    fix: 'publish {"lane": "<lane id>", "raw": <number or array of numbers>} on dev/{device}/evt/shelf.reading; the lane must be in cabinet.shelves',
    status: 400,
  },
  EDGE_ERR_CAB_DOOR_OPEN: {
    message: 'cabinet door is open; session {requested} refused',
    fix: 'close the cabinet door (it must be closed for the opening count), then scan again',
    status: 409,
  },
  EDGE_ERR_RFID_PORT: {
    message: 'RFID reader port {path}: {reason}',
    fix: 'check the reader cable/USB adapter and rfid.serialPath; the driver reopens the port with backoff',
  },
  EDGE_ERR_RFID_ANTENNA: {
    message: 'RFID reader {reader}: antenna {antenna} missing or faulty after {retries} retries',
    fix: 'check the antenna cable on that port, or remove the port from rfid.antennas; tags on it are kept (not reported gone) while it fails',
  },
  EDGE_ERR_RFID_TIMEOUT: {
    message: 'RFID reader {reader}: no answer for antenna {antenna} after {retries} retries',
    fix: 'check power, baud rate (rfid.baudRate) and rfid.framing; raise rfid.responseTimeoutMs for long scan times',
  },
  EDGE_ERR_RFID_CORRUPT: {
    message:
      'RFID reader {reader}: answers for antenna {antenna} kept failing their check after {retries} retries',
    fix: 'line noise: check the cable, its shielding and ground, and the baud rate',
  },
  EDGE_ERR_RFID_READER: {
    message: 'RFID reader {reader}: antenna {antenna} inventory failed with a reader error ({outcome})',
    fix: 'power-cycle the reader; check that rfid.framing and rfid.addr match its settings',
  },
  EDGE_ERR_RFID_LINK_DOWN: {
    message: 'RFID reader {reader}: serial link down while inventorying antenna {antenna}',
    fix: 'the port disappeared (cable, USB adapter); the driver reopens it and resumes',
  },
} as const satisfies Catalogue;

export type EdgeErrorCode = keyof typeof EDGE_ERRORS;
export const edgeError = errorFactory(EDGE_ERRORS);
