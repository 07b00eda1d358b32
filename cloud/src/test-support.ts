import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Ack } from '@storelink/protocols';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import pino from 'pino';

/** Test helpers for the cloud's own tests (raw MQTT gateways, polling). */

export const silentLogger = () => pino({ level: process.env.CLOUD_TEST_LOG ?? 'silent' });

export function tempDir(prefix = 'storelink-cloud-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

export async function waitFor<T>(
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  timeoutMs = 5000,
): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw mqtt.js client playing a gateway, recording what it receives. */
export interface FakeGateway {
  client: MqttClient;
  received: { topic: string; payload: string }[];
  acks(): Ack[];
  close(): Promise<void>;
}

export async function connectGateway(
  url: string,
  opts: { username: string; password: string; clientId?: string } & Partial<IClientOptions>,
): Promise<FakeGateway> {
  const client = await mqtt.connectAsync(
    url,
    {
      protocolVersion: 4,
      reconnectPeriod: 0,
      connectTimeout: 5000,
      clientId: opts.clientId ?? `${opts.username}-test`,
      ...opts,
    },
    false,
  );
  const received: { topic: string; payload: string }[] = [];
  client.on('message', (topic, payload) => received.push({ topic, payload: payload.toString() }));
  return {
    client,
    received,
    acks: () => received.filter((m) => m.topic.endsWith('/ack')).map((m) => JSON.parse(m.payload) as Ack),
    close: () => client.endAsync(true),
  };
}
