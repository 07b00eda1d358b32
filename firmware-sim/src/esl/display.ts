import { createHash } from 'node:crypto';
import { canonicalJson, deviceCommandTopic, deviceEventTopic, esl } from '@storelink/protocols';
import mqtt, { type MqttClient } from 'mqtt';

/**
 * A store signage screen: an MQTT device over WebSocket to the edge broker. It takes
 * `dev/{id}/cmd/esl.show` (retained by the edge, so it gets the latest content when it
 * connects), checks the content against its hash, shows it, and confirms with
 * `esl.shown {hash}` — the same confirm-by-hash rule as the tags [ESL-CONFIRM-1].
 */
export class SimDisplay {
  shown: { hash: string; content: esl.LabelContent } | undefined;
  readonly history: string[] = [];
  rejected = 0;
  private client: MqttClient | null = null;
  private n = 0;

  constructor(
    readonly id: string,
    private readonly password: string,
  ) {}

  async connect(wsUrl: string): Promise<void> {
    this.client = await mqtt.connectAsync(wsUrl, {
      clientId: this.id,
      username: this.id,
      password: this.password,
      reconnectPeriod: 0,
    });
    this.client.on('message', (topic, payload) => {
      if (topic !== deviceCommandTopic(this.id, esl.DISPLAY_SHOW)) return;
      void this.onShow(payload);
    });
    await this.client.subscribeAsync(deviceCommandTopic(this.id, esl.DISPLAY_SHOW), { qos: 1 });
  }

  private async onShow(payload: Buffer): Promise<void> {
    const cmd = JSON.parse(payload.toString()) as { payload: { hash: string; content: esl.LabelContent } };
    const { hash, content } = cmd.payload;
    const mine = createHash('md5').update(canonicalJson(content)).digest('hex').slice(0, 16);
    if (mine !== hash) {
      this.rejected++;
      return;
    }
    this.shown = { hash, content };
    this.history.push(hash);
    await this.client?.publishAsync(
      deviceEventTopic(this.id, esl.ESL_SHOWN),
      JSON.stringify({ id: `${this.id}-${++this.n}`, hash }),
      { qos: 1 },
    );
  }

  async close(): Promise<void> {
    await this.client?.endAsync(true).catch(() => undefined);
    this.client = null;
  }
}
