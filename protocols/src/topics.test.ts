import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  deviceCommandTopic,
  deviceEventTopic,
  deviceResultTopic,
  deviceStateTopic,
  gatewayTopic,
  GATEWAY_CHANNELS,
  isInDeviceSubtree,
  parseDeviceTopic,
  parseGatewayTopic,
} from './topics.ts';

const idArb = fc.stringMatching(/^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,20}$/);
const typeArb = fc.stringMatching(/^[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){0,2}$/);

describe('edge-local topics', () => {
  it('builders and parsers are inverse pairs', () => {
    fc.assert(
      fc.property(idArb, typeArb, (device, type) => {
        expect(parseDeviceTopic(deviceEventTopic(device, type))).toEqual({
          kind: 'evt',
          deviceId: device,
          type,
        });
        expect(parseDeviceTopic(deviceCommandTopic(device, type))).toEqual({
          kind: 'cmd',
          deviceId: device,
          type,
        });
        expect(parseDeviceTopic(deviceResultTopic(device, device))).toEqual({
          kind: 'res',
          deviceId: device,
          commandId: device,
        });
        expect(parseDeviceTopic(deviceStateTopic(device))).toEqual({ kind: 'state', deviceId: device });
      }),
    );
  });

  it.each([
    'dev/a/evt',
    'dev/a/evt/Telemetry',
    'dev/a/evt/x/y',
    'dev//evt/telemetry',
    'dev/../evt/telemetry',
    'dev/a b/evt/telemetry',
    'sl/v1/s/g/up',
    'dev/a/other/x',
    '',
  ])('refuses %j', (topic) => {
    expect(parseDeviceTopic(topic)).toBeNull();
  });

  it('keeps a device inside its own subtree', () => {
    expect(isInDeviceSubtree('a', 'dev/a/cmd/#')).toBe(true);
    expect(isInDeviceSubtree('a', 'dev/a/#')).toBe(true);
    expect(isInDeviceSubtree('a', 'dev/ab/cmd/#')).toBe(false);
    expect(isInDeviceSubtree('a', 'dev/+/cmd/#')).toBe(false);
    expect(isInDeviceSubtree('a', 'dev/#')).toBe(false);
    expect(isInDeviceSubtree('a', '#')).toBe(false);
    expect(isInDeviceSubtree('a', 'dev/a/')).toBe(false);
  });
});

describe('cloud topics', () => {
  it('round-trips every channel', () => {
    fc.assert(
      fc.property(idArb, idArb, fc.constantFrom(...GATEWAY_CHANNELS), (site, gateway, channel) => {
        expect(parseGatewayTopic(gatewayTopic({ site, gateway }, channel))).toEqual({
          site,
          gateway,
          channel,
        });
      }),
    );
  });

  it.each(['sl/v1/s/g', 'sl/v2/s/g/up', 'sl/v1/s/g/down', 'sl/v1/+/g/up', 'sl/v1/s/g/shadow'])(
    'refuses %j',
    (topic) => {
      expect(parseGatewayTopic(topic)).toBeNull();
    },
  );
});
