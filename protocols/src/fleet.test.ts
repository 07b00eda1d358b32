import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkCommandBody, commandTypeSpec } from './commands.ts';
import { eventTypeSpec } from './events.ts';
import {
  FIRMWARE_KEY,
  FIRMWARE_UPDATE,
  SHADOW_DELTA,
  SHADOW_REPORTED,
  sameJson,
  shadowDelta,
  validateFirmwareImage,
  validateShadowDelta,
} from './fleet.ts';
import { newId } from './ids.ts';

const json = fc.jsonValue({ maxDepth: 3 });
const doc = fc.dictionary(fc.stringMatching(/^[a-z][a-z0-9]{0,7}$/), json, { maxKeys: 8 });
const image = (version: string) => ({
  version,
  url: 'https://fw.example/x.bin',
  sha256: 'f'.repeat(64),
  size: 100,
});

describe('shadow delta', () => {
  it('is empty once reported holds every desired value, whatever the key order', () => {
    fc.assert(
      fc.property(doc, doc, (desired, reported) => {
        // Reverse key insertion order: equality must not depend on it.
        const copy = Object.fromEntries(
          Object.entries(desired)
            .reverse()
            .map(([k, v]) => [k, structuredClone(v)]),
        );
        expect(shadowDelta(desired, { ...reported, ...copy })).toEqual([]);
      }),
    );
  });

  it('names exactly the desired keys whose value differs', () => {
    fc.assert(
      fc.property(doc, doc, (desired, reported) => {
        const d = shadowDelta(desired, reported);
        for (const k of Object.keys(desired)) expect(d.includes(k)).toBe(!sameJson(desired[k], reported[k]));
        expect(d.every((k) => k in desired)).toBe(true);
      }),
    );
  });

  it('compares firmware by version only (reported carries { version })', () => {
    expect(shadowDelta({ [FIRMWARE_KEY]: image('1.1.0') }, { [FIRMWARE_KEY]: { version: '1.1.0' } })).toEqual(
      [],
    );
    expect(shadowDelta({ [FIRMWARE_KEY]: image('1.2.0') }, { [FIRMWARE_KEY]: { version: '1.1.0' } })).toEqual(
      [FIRMWARE_KEY],
    );
    expect(shadowDelta({ [FIRMWARE_KEY]: image('1.2.0') }, {})).toEqual([FIRMWARE_KEY]);
  });

  it('sameJson tells arrays from objects and nested differences', () => {
    expect(sameJson({ a: [1, 2] }, { a: [1, 2] })).toBe(true);
    expect(sameJson({ a: [1, 2] }, { a: { 0: 1, 1: 2 } })).toBe(false);
    expect(sameJson({ a: { b: 1 } }, { a: { b: 2 } })).toBe(false);
    expect(sameJson(null, {})).toBe(false);
  });
});

describe('fleet message schemas', () => {
  it('registers shadow.delta (gateway), firmware.update (device) and shadow.reported (edge event)', () => {
    expect(commandTypeSpec(SHADOW_DELTA)?.executor).toBe('gateway');
    expect(commandTypeSpec(FIRMWARE_UPDATE)?.executor).toBe('device');
    expect(eventTypeSpec(SHADOW_REPORTED)).toMatchObject({ source: 'edge', lane: 'event' });
  });

  it('checks shadow.delta and firmware.update bodies', () => {
    const cmd = (type: string, payload: unknown, device?: string) =>
      checkCommandBody({
        v: 1,
        id: newId(),
        type,
        target: device ? { device } : {},
        issuedAt: 1,
        expiresAt: 2,
        payload,
      });
    expect(cmd(SHADOW_DELTA, { version: 3, desired: { logLevel: 'warn' } }).ok).toBe(true);
    expect(cmd(SHADOW_DELTA, { device: 'fr-1', version: 1, desired: {} }).ok).toBe(true);
    // The device goes in the payload: the gateway executes shadow.delta itself.
    expect(cmd(SHADOW_DELTA, { version: 1, desired: {} }, 'fr-1').ok).toBe(false);
    expect(validateShadowDelta.check({ version: 0, desired: {} }).ok).toBe(false);
    expect(validateShadowDelta.check({ version: 1, desired: { '1bad': 1 } }).ok).toBe(false);
    expect(cmd(FIRMWARE_UPDATE, image('2.0.0'), 'fr-1').ok).toBe(true);
    expect(cmd(FIRMWARE_UPDATE, image('2.0.0')).ok).toBe(false);
    for (const bad of [
      { ...image('2.0.0'), url: 'file:///etc/passwd' },
      { ...image('2.0.0'), sha256: 'F'.repeat(64) },
      { ...image('2.0.0'), size: 0 },
      { ...image('2.0.0'), extra: 1 },
      { ...image('../x'), version: '../x' },
    ]) {
      const r = validateFirmwareImage.check(bad);
      expect(r.ok, JSON.stringify(bad)).toBe(false);
      if (!r.ok) expect(r.error.code).toBe('PROTO_ERR_SCHEMA');
    }
  });
});
