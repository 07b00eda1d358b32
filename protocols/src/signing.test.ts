import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson } from './canonical.ts';
import { type UnsignedCommand, validateCommandEnvelope } from './commands.ts';
import { newId } from './ids.ts';
import { generateSigningKeys, loadPublicKey, signCommand, verifyCommand } from './signing.ts';
import { gatewayTopic } from './topics.ts';

const keys = generateSigningKeys();
const other = generateSigningKeys();
const topic = gatewayTopic({ site: 's1', gateway: 'g1' }, 'cmd');
const now = 1_760_000_000_000;

function command(over: Partial<UnsignedCommand> = {}): UnsignedCommand {
  return {
    v: 1,
    id: newId(now),
    type: 'device.config',
    target: { device: 'fridge-1' },
    issuedAt: now,
    expiresAt: now + 60_000,
    payload: { config: { intervalMs: 500 } },
    ...over,
  };
}

describe('canonical JSON', () => {
  it('is independent of key order and whitespace', () => {
    expect(canonicalJson({ b: 1, a: { d: [1, { y: 2, x: 1 }], c: 'x' } })).toBe(
      '{"a":{"c":"x","d":[1,{"x":1,"y":2}]},"b":1}',
    );
  });

  it('gives equal strings for values equal after a JSON round trip', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (v) => {
        expect(canonicalJson(JSON.parse(JSON.stringify(v)))).toBe(canonicalJson(v));
      }),
    );
  });
});

describe('command signatures [CMD-SIG-1] and expiry [CMD-EXP-1]', () => {
  it('a signed command verifies and matches the envelope schema', () => {
    const signed = signCommand(keys.privateKeyPem, topic, command());
    expect(validateCommandEnvelope(signed)).toBe(true);
    expect(verifyCommand(keys.publicKeyPem, topic, signed, now + 1)).toEqual({ ok: true });
  });

  it('survives re-serialisation with reordered keys', () => {
    const signed = signCommand(keys.privateKeyPem, topic, command());
    const reordered = JSON.parse(JSON.stringify(Object.fromEntries(Object.entries(signed).reverse())));
    expect(verifyCommand(keys.publicKeyPem, topic, reordered, now + 1)).toEqual({ ok: true });
  });

  it.each([
    ['payload', { payload: { config: { intervalMs: 1 } } }],
    ['target', { target: { device: 'fridge-2' } }],
    ['expiry', { expiresAt: now + 3_600_000 }],
    ['type', { type: 'ping' }],
    ['id', { id: newId(now + 5) }],
  ])('refuses a command whose %s was changed after signing', (_what, change) => {
    const signed = signCommand(keys.privateKeyPem, topic, command());
    const r = verifyCommand(keys.publicKeyPem, topic, { ...signed, ...change }, now + 1);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.error.code).toBe('PROTO_ERR_BAD_SIGNATURE');
  });

  it('refuses a command replayed onto another gateway topic', () => {
    const signed = signCommand(keys.privateKeyPem, topic, command());
    const r = verifyCommand(
      keys.publicKeyPem,
      gatewayTopic({ site: 's1', gateway: 'g2' }, 'cmd'),
      signed,
      now,
    );
    expect(r.ok ? 'ok' : r.error.code).toBe('PROTO_ERR_BAD_SIGNATURE');
  });

  it('refuses a command signed by another key', () => {
    const signed = signCommand(other.privateKeyPem, topic, command());
    const r = verifyCommand(keys.publicKeyPem, topic, signed, now);
    expect(r.ok ? 'ok' : r.error.code).toBe('PROTO_ERR_BAD_SIGNATURE');
  });

  it('refuses an expired command, at and after its expiry', () => {
    const signed = signCommand(keys.privateKeyPem, topic, command());
    for (const t of [signed.expiresAt, signed.expiresAt + 1]) {
      const r = verifyCommand(keys.publicKeyPem, topic, signed, t);
      expect(r.ok ? 'ok' : r.error.code).toBe('PROTO_ERR_EXPIRED');
    }
  });

  it('refuses a garbage key with a coded error', () => {
    expect(() => loadPublicKey('not a key')).toThrowError(
      expect.objectContaining({ code: 'PROTO_ERR_BAD_KEY' }),
    );
  });
});
