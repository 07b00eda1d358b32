import mqtt from 'mqtt';
import sharp from 'sharp';
import { corruptJpeg } from './images.ts';

export * from './images.ts';

/**
 * A simulated shelf/machine camera: connects to the edge broker as its own device and
 * publishes JPEG frames on `dev/{id}/evt/vision.frame` at `fps`, cycling through
 * `frames`. Faults: a corrupt JPEG every `corruptEvery` frames, a wrong-size frame
 * every `wrongSizeEvery`, and `burst(n)` (n frames at once, as a camera flushing its
 * buffer after a stall).
 */
export interface SimCameraOptions {
  id: string;
  password: string;
  brokerUrl: string;
  frames: Buffer[];
  fps: number;
  corruptEvery?: number;
  wrongSizeEvery?: number;
}

export class SimCamera {
  private client: mqtt.MqttClient | undefined;
  private timer: NodeJS.Timeout | undefined;
  private n = 0;
  private tiny: Buffer | undefined;
  readonly sent = { frames: 0, corrupt: 0, wrongSize: 0 };

  constructor(private readonly o: SimCameraOptions) {}

  get topic(): string {
    return `dev/${this.o.id}/evt/vision.frame`;
  }

  /** Builds the fault frames (start() calls it). */
  async prepare(): Promise<void> {
    this.tiny ??= await sharp({ create: { width: 8, height: 8, channels: 3, background: '#777' } })
      .jpeg()
      .toBuffer();
  }

  async start(): Promise<void> {
    await this.prepare();
    this.client = await mqtt.connectAsync(this.o.brokerUrl, {
      clientId: `cam-${this.o.id}`,
      username: this.o.id,
      password: this.o.password,
      reconnectPeriod: 200,
    });
    if (this.o.fps > 0) this.timer = setInterval(() => void this.publishNext(), 1000 / this.o.fps);
  }

  /** The next frame, with the configured faults applied. */
  nextFrame(): Buffer {
    const i = this.n++;
    const frame = this.o.frames[i % this.o.frames.length]!;
    if (this.o.corruptEvery && i % this.o.corruptEvery === this.o.corruptEvery - 1) {
      this.sent.corrupt++;
      return corruptJpeg(frame);
    }
    if (this.o.wrongSizeEvery && i % this.o.wrongSizeEvery === this.o.wrongSizeEvery - 1) {
      this.sent.wrongSize++;
      return this.tiny!;
    }
    return frame;
  }

  async publishNext(): Promise<void> {
    if (!this.client) return;
    const f = this.nextFrame();
    this.sent.frames++;
    // QoS 0: a camera frame is worth nothing late; the edge drops stale ones anyway.
    await this.client.publishAsync(this.topic, f, { qos: 0 });
  }

  /** Publishes one given frame (QoS 1 when the caller wants the broker's acknowledgement). */
  async publishFrame(frame: Buffer, qos: 0 | 1 = 0): Promise<void> {
    if (!this.client) throw new Error('camera not started');
    this.sent.frames++;
    await this.client.publishAsync(this.topic, frame, { qos });
  }

  async burst(n: number): Promise<void> {
    await Promise.all(Array.from({ length: n }, () => this.publishNext()));
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.client?.endAsync();
  }
}
