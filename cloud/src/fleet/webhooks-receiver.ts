import { createServer, type Server } from 'node:http';
import { DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, verifyWebhook } from './webhooks.ts';

/**
 * A test receiver for alert webhooks: a real HTTP server that checks each POST's signature
 * [ALERT-HOOK-2], answers 401 to a bad one, can fail the first N deliveries with 503 (to
 * exercise the retries [ALERT-HOOK-3]) and records what it accepted (repeats by delivery
 * id are recorded once, as a receiver should). Used by the unit and system tests; also a
 * template for a real receiver.
 */
export interface ReceivedWebhook {
  delivery: string;
  event: string;
  body: {
    type: string;
    at: number;
    alert: { id: string; kind: string; gateway: string; subject: string; state: string };
  };
}

export interface WebhookReceiver {
  url: string;
  received: ReceivedWebhook[];
  /** Requests refused because the signature did not verify. */
  badSignatures: number;
  /** Requests answered 503 on purpose. */
  failed: number;
  close(): Promise<void>;
}

export async function startWebhookReceiver(opts: {
  secret: string;
  failFirst?: number;
  now?: () => number;
}): Promise<WebhookReceiver> {
  const now = opts.now ?? Date.now;
  const seen = new Set<string>();
  let failLeft = opts.failFirst ?? 0;
  const state = { received: [] as ReceivedWebhook[], badSignatures: 0, failed: 0 };
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      const sig = req.headers[SIGNATURE_HEADER] as string | undefined;
      if (req.method !== 'POST' || !verifyWebhook(opts.secret, sig, body, now())) {
        state.badSignatures += 1;
        res.writeHead(401).end('bad signature');
        return;
      }
      if (failLeft > 0) {
        failLeft -= 1;
        state.failed += 1;
        res.writeHead(503).end('try later');
        return;
      }
      const delivery = String(req.headers[DELIVERY_HEADER] ?? '');
      if (!seen.has(delivery)) {
        seen.add(delivery);
        state.received.push({
          delivery,
          event: String(req.headers[EVENT_HEADER] ?? ''),
          body: JSON.parse(body) as ReceivedWebhook['body'],
        });
      }
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/hook`,
    get received() {
      return state.received;
    },
    get badSignatures() {
      return state.badSignatures;
    },
    get failed() {
      return state.failed;
    },
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
