/**
 * Error catalogue shared shape. Each package owns a catalogue of stable codes
 * (`PROTO_ERR_*`, `EDGE_ERR_*`, `CLOUD_ERR_*`); `docs/errors.md` lists every code and a
 * test keeps the two in step (house style 4, after fastify's lib/errors.js).
 */

export interface ErrorSpec {
  /** Human message; `{name}` placeholders are filled from `details`. */
  readonly message: string;
  /** What the caller should do about it. */
  readonly fix: string;
  /** HTTP status when the error reaches an API caller. */
  readonly status?: number;
}

export type Catalogue = Readonly<Record<string, ErrorSpec>>;

export class StorelinkError extends Error {
  readonly code: string;
  readonly fix: string;
  readonly status: number;
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: string,
    spec: ErrorSpec,
    details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ) {
    super(fill(spec.message, details), options);
    this.name = 'StorelinkError';
    this.code = code;
    this.fix = spec.fix;
    this.status = spec.status ?? 400;
    this.details = details;
  }

  toJSON(): { code: string; message: string; fix: string; details: Readonly<Record<string, unknown>> } {
    return { code: this.code, message: this.message, fix: this.fix, details: this.details };
  }
}

function fill(template: string, details: Record<string, unknown>): string {
  return template.replace(/\{(\w+)\}/g, (whole, key: string) =>
    key in details ? String(details[key]) : whole,
  );
}

/** Builds a typed factory over a catalogue: `err('PROTO_ERR_BAD_TOPIC', { topic })`. */
export function errorFactory<C extends Catalogue>(catalogue: C) {
  return function makeError(
    code: keyof C & string,
    details: Record<string, unknown> = {},
    options?: { cause?: unknown },
  ): StorelinkError {
    const spec = catalogue[code];
    if (!spec) throw new Error(`unknown error code ${code}`);
    return new StorelinkError(code, spec, details, options);
  };
}

export function isStorelinkError(e: unknown): e is StorelinkError {
  return e instanceof StorelinkError;
}

export const PROTO_ERRORS = {
  PROTO_ERR_BAD_TOPIC: {
    message: 'topic "{topic}" is not a storelink topic: {reason}',
    fix: 'publish under dev/{deviceId}/evt/{type} (devices) or sl/v1/{site}/{gateway}/... (gateways)',
  },
  PROTO_ERR_BAD_ID: {
    message: '{what} "{value}" is not a valid id',
    fix: 'ids are 1-64 characters of A-Z a-z 0-9 _ - .',
  },
  PROTO_ERR_MALFORMED_JSON: {
    message: 'payload is not valid JSON: {reason}',
    fix: 'send a UTF-8 JSON object as the MQTT payload',
  },
  PROTO_ERR_OVERSIZE: {
    message: 'payload of {size} bytes exceeds the limit of {limit} bytes',
    fix: 'send smaller messages; split large data across several events',
    status: 413,
  },
  PROTO_ERR_UNKNOWN_TYPE: {
    message: 'unknown {kind} type "{type}"',
    fix: 'use one of the types listed in docs/protocol.md',
  },
  PROTO_ERR_SCHEMA: {
    message: '{what} does not match its schema: {errors}',
    fix: 'correct the fields named in the message; docs/protocol.md shows an example of each message',
  },
  PROTO_ERR_BAD_SIGNATURE: {
    message: 'command {id} has an invalid signature',
    fix: 'commands must be signed by the cloud key the edge is configured to trust',
    status: 401,
  },
  PROTO_ERR_EXPIRED: {
    message: 'command {id} expired at {expiresAt} (now {now})',
    fix: 'issue a new command; expired commands are never executed',
    status: 410,
  },
  PROTO_ERR_BAD_KEY: {
    message: 'key is not a usable Ed25519 {kind} key: {reason}',
    fix: 'provide a PEM-encoded Ed25519 key (openssl genpkey -algorithm ed25519)',
  },
  PROTO_ERR_MDB_CHECKSUM: {
    message: 'vending serial frame has checksum {got}, expected {want} ({bytes})',
    fix: 'line noise or a garbled frame: the frame is dropped and the sender repeats it; check wiring and baud rate if it persists',
  },
  PROTO_ERR_MDB_LENGTH: {
    message: 'vending serial frame has a bad length: {reason}',
    fix: 'frames are SYNC LEN BODY[1..36] CHK; see docs/protocol.md "Vending serial link"',
  },
  PROTO_ERR_MDB_UNKNOWN_COMMAND: {
    message: 'vending serial frame carries an unknown command: {reason}',
    fix: 'use the cashless-device commands listed in docs/protocol.md "Vending serial link"',
  },
  PROTO_ERR_MDB_GARBAGE: {
    message: 'skipped {skipped} bytes that are not a vending serial frame ({bytes})',
    fix: 'line noise or a peer that started mid-frame; the parser resynchronises on the next SYNC byte',
  },
  PROTO_ERR_MDB_TRUNCATED: {
    message: 'vending serial frame was cut off ({pending} bytes pending: {bytes})',
    fix: 'the sender stopped mid-frame (reset, unplugged cable); it repeats the frame after recovery',
  },
  PROTO_ERR_MDB_FIELD: {
    message: 'vending serial field {field}={value} is out of range: {reason}',
    fix: 'prices and items are 16-bit unsigned, feature bytes 8-bit; see docs/protocol.md',
  },
  PROTO_ERR_MDB_OUT_OF_SEQUENCE: {
    message: 'vending serial command {command} is out of sequence in state {state}',
    fix: 'the peers disagree on the session state; the cashless device answers OUT OF SEQUENCE and the VMC resets it',
  },
  PROTO_ERR_RFID_CRC: {
    message: 'RFID reader frame ({framing}) has check {got}, expected {want} ({bytes})',
    fix: 'line noise or a garbled frame: it is dropped and the inventory retried; check wiring, baud rate and the reader framing setting if it persists',
  },
  PROTO_ERR_RFID_LENGTH: {
    message: 'RFID reader frame has a bad length ({framing}): {reason}',
    fix: 'see docs/protocol.md "RFID reader serial links" for the frame layouts',
  },
  PROTO_ERR_RFID_GARBAGE: {
    message: 'skipped {skipped} bytes that are not an RFID reader frame ({bytes})',
    fix: 'line noise or a reader that started mid-frame; the parser resynchronises on the next frame',
  },
  PROTO_ERR_RFID_TRUNCATED: {
    message: 'RFID reader frame was cut off ({pending} bytes pending: {bytes})',
    fix: 'the reader stopped mid-frame (reset, unplugged cable); the driver retries the inventory',
  },
  PROTO_ERR_RFID_PAYLOAD: {
    message: 'RFID reader frame ({framing}) has a well-formed check but a malformed body: {reason} ({bytes})',
    fix: 'check that rfid.framing in the gateway config matches the reader (chafon or r2000)',
  },
  PROTO_ERR_RFID_FIELD: {
    message: 'RFID frame field {field}={value} is out of range: {reason}',
    fix: 'antennas are 1..4, EPCs 1..62 bytes of hex; see docs/protocol.md "RFID reader serial links"',
  },
} as const satisfies Catalogue;

export type ProtoErrorCode = keyof typeof PROTO_ERRORS;
export const protoError = errorFactory(PROTO_ERRORS);
