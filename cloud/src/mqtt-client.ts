import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { cloudError } from './errors.ts';

export interface ServiceClientOptions {
  url: string;
  username?: string;
  password?: string;
  clientId: string;
  /** false: the broker keeps our subscriptions and queues QoS1 messages while we reconnect. */
  clean: boolean;
  logger: Logger;
  connectTimeoutMs?: number;
}

/**
 * Every cloud service talks to the broker as an ordinary MQTT 3.1.1 client (mqtt.js),
 * also in embedded mode, so the broker is swappable. The first connect fails fast with
 * CLOUD_ERR_BROKER (a wrong URL or password must stop the start); later drops reconnect.
 */
export async function connectServiceClient(o: ServiceClientOptions): Promise<MqttClient> {
  const log = o.logger;
  let client: MqttClient;
  try {
    client = await mqtt.connectAsync(
      o.url,
      {
        protocolVersion: 4,
        clientId: o.clientId,
        clean: o.clean,
        ...(o.username !== undefined ? { username: o.username } : {}),
        ...(o.password !== undefined ? { password: o.password } : {}),
        connectTimeout: o.connectTimeoutMs ?? 10_000,
        reconnectPeriod: 1000,
        keepalive: 30,
      },
      false,
    );
  } catch (e) {
    throw cloudError('CLOUD_ERR_BROKER', { client: o.clientId, reason: (e as Error).message }, { cause: e });
  }
  client.on('offline', () =>
    log.warn({ code: 'CLOUD_ERR_BROKER', client: o.clientId }, 'broker connection lost'),
  );
  client.on('reconnect', () => log.debug({ client: o.clientId }, 'reconnecting to broker'));
  client.on('connect', () => log.info({ client: o.clientId }, 'connected to broker'));
  client.on('error', (err) =>
    log.warn({ code: 'CLOUD_ERR_BROKER', client: o.clientId, err: err.message }, 'broker error'),
  );
  return client;
}
