import { createHmac, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { deviceEventTopic, MEMBER_RECOGNIZED } from '@storelink/protocols';
import mqtt, { type MqttClient } from 'mqtt';

/**
 * A simulated member channel (a WeChat mini-program backend): receives the cloud's coupon
 * webhook, checks the HMAC over `timestamp\nbody`, answers 2xx, and shows each coupon to
 * the member once — a redelivery of the same coupon id is acknowledged and counted, not
 * shown twice [COUPON-DELIVER-1]. `failNext(n)` answers 503 to the next n deliveries.
 */
export interface ReceivedCoupon {
  couponId: string;
  memberId: string;
  channelIds: Record<string, string[]>;
  template: { id: string; name: string; kind: string; amountOffCents?: number };
  expiresAt: number;
}

export class MiniProgramReceiver {
  readonly coupons = new Map<string, ReceivedCoupon>();
  deliveries = 0;
  redeliveries = 0;
  badSignatures = 0;
  private failing = 0;
  private server: Server | undefined;
  url = '';

  constructor(private readonly secret: string) {}

  failNext(n: number): void {
    this.failing = n;
  }

  async start(port = 0): Promise<string> {
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString();
        const status = this.handle(req.headers, body);
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ ok: status < 300 }));
      });
    });
    await new Promise<void>((r) => this.server!.listen(port, '127.0.0.1', r));
    const a = this.server.address();
    this.url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : port}/coupons`;
    return this.url;
  }

  private handle(h: Record<string, string | string[] | undefined>, body: string): number {
    this.deliveries++;
    const ts = String(h['x-storelink-timestamp'] ?? '');
    const sig = Buffer.from(String(h['x-storelink-signature'] ?? ''), 'base64');
    const want = createHmac('sha256', this.secret).update(`${ts}\n${body}`).digest();
    if (sig.length !== want.length || !timingSafeEqual(sig, want)) {
      this.badSignatures++;
      return 401;
    }
    if (this.failing > 0) {
      this.failing--;
      return 503;
    }
    const c = JSON.parse(body) as ReceivedCoupon;
    if (this.coupons.has(c.couponId)) this.redeliveries++;
    else this.coupons.set(c.couponId, c);
    return 200;
  }

  async stop(): Promise<void> {
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

/**
 * A camera that recognises members on the device and publishes only
 * `member.recognized {memberId, similarity, camera}` (never a face) [VISION-PRIVACY-1]
 * to the edge broker as its own device, QoS 1. Used until the on-device vision
 * (edge/src/vision) is wired in; it speaks the same topic and schema.
 */
export class SimRecognitionCamera {
  private client: MqttClient | undefined;
  private n = 0;

  constructor(
    readonly id: string,
    private readonly password: string,
  ) {}

  async connect(brokerUrl: string): Promise<void> {
    this.client = await mqtt.connectAsync(brokerUrl, {
      clientId: this.id,
      username: this.id,
      password: this.password,
      reconnectPeriod: 0,
    });
  }

  /** Publishes one recognition; `id` repeats a resend (the cloud counts it once). */
  async recognise(
    memberId: string,
    opts: { similarity?: number; id?: string; zone?: string } = {},
  ): Promise<string> {
    const id = opts.id ?? `${this.id}-${Date.now().toString(36)}-${++this.n}`;
    const payload = {
      id,
      ts: Date.now(),
      memberId,
      similarity: opts.similarity ?? 0.91,
      camera: this.id,
      ...(opts.zone ? { zone: opts.zone } : {}),
    };
    await this.client!.publishAsync(deviceEventTopic(this.id, MEMBER_RECOGNIZED), JSON.stringify(payload), {
      qos: 1,
    });
    return id;
  }

  async close(): Promise<void> {
    await this.client?.endAsync();
  }
}
