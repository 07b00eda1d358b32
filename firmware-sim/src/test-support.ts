import { createServer, type Server, type Socket } from 'node:net';
import { Aedes, type AedesOptions } from 'aedes';
import mqtt, { type MqttClient } from 'mqtt';

/**
 * Test-only helpers (not exported from index.ts): a plain aedes broker on a free port
 * that checks per-device credentials like the edge does, and an observer client.
 */
export interface TestBroker {
  url: string;
  port: number;
  aedes: Aedes;
  /** Client ids that disconnected, in order. */
  disconnects: string[];
  /** Graceful close. */
  close(): Promise<void>;
  /** Drops every connection at once (like a killed agent) and stops listening. */
  kill(): Promise<void>;
}

const OBSERVER_LOGIN = 'observer';

export async function startTestBroker(
  opts: { port?: number; credentials?: Record<string, string>; aedes?: AedesOptions } = {},
): Promise<TestBroker> {
  const creds = opts.credentials;
  const aedes = await Aedes.createBroker({
    ...(creds
      ? {
          authenticate: (client, username, password, done) => {
            // username must equal the client id, password must match (edge rule); the
            // test observer has its own fixed login.
            const observer = username === OBSERVER_LOGIN && password?.toString() === OBSERVER_LOGIN;
            const ok =
              observer ||
              (username !== undefined &&
                username === client.id &&
                Object.hasOwn(creds, username) &&
                password?.toString() === creds[username]);
            if (ok) done(null, true);
            else {
              const err = Object.assign(new Error('bad credentials'), { returnCode: 4 });
              done(err as never, false);
            }
          },
        }
      : {}),
    ...opts.aedes,
  });
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    aedes.handle(s);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 0, '127.0.0.1', () => resolve());
  });
  const port = (server.address() as { port: number }).port;
  const disconnects: string[] = [];
  aedes.on('clientDisconnect', (c) => disconnects.push(c.id));
  const shut = async (hard: boolean) => {
    if (hard) for (const s of sockets) s.destroy();
    await new Promise<void>((r) => aedes.close(() => r()));
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    aedes,
    disconnects,
    close: () => shut(false),
    kill: () => shut(true),
  };
}

export interface Observed {
  topic: string;
  payload: unknown;
}

export interface Observer {
  client: MqttClient;
  messages: Observed[];
  /** Resolves with the first message (from `from` on) matching `pred`. */
  waitFor(pred: (m: Observed) => boolean, timeoutMs?: number, from?: number): Promise<Observed>;
  publish(topic: string, payload: unknown): Promise<void>;
  close(): Promise<void>;
}

export async function startObserver(url: string, filter = 'dev/#'): Promise<Observer> {
  const client = await mqtt.connectAsync(url, {
    clientId: `observer-${process.pid}-${Math.random().toString(36).slice(2)}`,
    username: OBSERVER_LOGIN,
    password: OBSERVER_LOGIN,
  });
  const messages: Observed[] = [];
  const listeners = new Set<() => void>();
  client.on('message', (topic, buf) => {
    let payload: unknown;
    try {
      payload = JSON.parse(buf.toString());
    } catch {
      payload = buf.toString();
    }
    messages.push({ topic, payload });
    for (const l of listeners) l();
  });
  await client.subscribeAsync(filter, { qos: 1 });
  return {
    client,
    messages,
    waitFor(pred, timeoutMs = 5000, from = 0) {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = messages.slice(from).find(pred);
          if (m) {
            listeners.delete(check);
            clearTimeout(t);
            resolve(m);
            return true;
          }
          return false;
        };
        const t = setTimeout(() => {
          listeners.delete(check);
          reject(new Error(`no matching message within ${timeoutMs} ms`));
        }, timeoutMs);
        if (!check()) listeners.add(check);
      });
    },
    async publish(topic, payload) {
      await client.publishAsync(topic, typeof payload === 'string' ? payload : JSON.stringify(payload), {
        qos: 1,
      });
    },
    async close() {
      await client.endAsync(true);
    },
  };
}

export async function eventually(cond: () => boolean, timeoutMs = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what} not reached within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
