import { createHash } from 'node:crypto';
import { deviceCommandTopic, deviceEventTopic, esl } from '@storelink/protocols';
import mqtt, { type MqttClient } from 'mqtt';
import { mulberry32, type Rng } from '../rng.ts';
import { SimClock } from './clock.ts';

/**
 * OpenEPaperLink-style access points and tags (shared/reference/01-esl.md).
 *
 * Each AP is a real MQTT device on the edge broker (own credentials, `dev/{ap}/...`):
 * it takes `esl.push` / `esl.cancel` commands and publishes batched `esl.checkin`,
 * `esl.xfer_complete`, `esl.xfer_timeout`, `esl.push_nack` events. The radio side (AP ↔
 * tags) runs on a discrete-event clock: tags wake on their own schedule, check in
 * (battery, temperature, RSSI/LQI, wake reason), download the pending image in 4096 B
 * blocks of 99 B parts, check the MD5 and confirm with XFER_COMPLETE. The AP serves one
 * tag at a time (others get BUSY and retry within seconds), holds at most 250 pending
 * items and times them out (attemptsLeft minutes, checked every 60 s).
 *
 * `run()` advances the clock slice by slice; after each slice every AP publishes what it
 * collected and waits for the PUBACKs. The edge acknowledges an AP event only after its
 * reactions (re-pushes) are published, and they travel on the same connection before the
 * PUBACK, so the simulated world never runs ahead of the edge.
 */

export type TagFault =
  /** some 99 B parts of each block are lost: the tag requests them again (bitmap) */
  | 'lost_block_ack'
  /** the XFER_COMPLETE_ACK is lost: the tag repeats XFER_COMPLETE */
  | 'dup_complete'
  /** the tag never wakes (broken, removed from the shelf) */
  | 'never_wakes'
  /** every transfer breaks off (radio shadow): the AP times the item out */
  | 'xfer_fail';

export interface SimTagSpec {
  mac: string;
  ap: string;
  size: esl.EslSize;
  bpp: esl.EslBpp;
  /** Sleep between check-ins when nothing is pending (OEPL 40 s .. 600 s back-off). */
  intervalS?: number;
  /** First wake this long after start (default: random phase within the interval). */
  phaseMs?: number;
  batteryMv?: number;
  /** The battery dies at this time: no wake-up from then on. */
  dieAt?: number;
  faults?: TagFault[];
}

export interface SimTag extends Required<Omit<SimTagSpec, 'phaseMs' | 'dieAt' | 'faults'>> {
  dieAt: number;
  faults: Set<TagFault>;
  /** dataVer of the image on the display, undefined after a reboot */
  shown: string | undefined;
  shownAt: number;
  /** Every image ever confirmed, in order (tests: what ended on the tag). */
  history: string[];
  wakes: number;
  busy: number;
  completesSent: number;
  wakeReason: number;
  epoch: number;
  /** OEPL power management: check-ins without an answer in a row (max 14) */
  attempts: number;
  /** moving average (8 samples) of the sleep interval, seconds */
  sleepAvgS: number;
  rssi: number;
  lqi: number;
  temperature: number;
}

interface Pending {
  dataVer: string;
  dataType: number;
  data: Buffer;
  attemptsLeft: number;
}

export interface SimApStats {
  pushesReceived: number;
  queueFull: number;
  timeouts: number;
  busyAnswers: number;
  completesForwarded: number;
  completesDeduped: number;
  transfers: number;
}

export class SimAp {
  readonly pending = new Map<string, Pending>();
  readonly stats: SimApStats = {
    pushesReceived: 0,
    queueFull: 0,
    timeouts: 0,
    busyAnswers: 0,
    completesForwarded: 0,
    completesDeduped: 0,
    transfers: 0,
  };
  busyMac: string | null = null;
  /** A powered-off AP (fault): tags get no answer and back off. */
  online = true;
  private lastAckMac: string | null = null;
  private client: MqttClient | null = null;
  /** What the radio reported, in the order it happened (the edge must see that order). */
  private out: Array<{ type: string; item: unknown }> = [];
  private n = 0;

  constructor(
    readonly id: string,
    private readonly password: string,
    private readonly clock: SimClock,
    readonly maxPending: number = esl.OEPL.apMaxPending,
  ) {}

  async connect(brokerUrl: string): Promise<void> {
    this.client = await mqtt.connectAsync(brokerUrl, {
      clientId: this.id,
      username: this.id,
      password: this.password,
      reconnectPeriod: 200,
      connectTimeout: 5000,
    });
    this.client.on('message', (topic, payload) => this.onCommand(topic, payload));
    await this.client.subscribeAsync(`dev/${this.id}/cmd/#`, { qos: 1 });
  }

  /** OEPL housekeeping, every 60 s: attemptsLeft--, at 1 the item times out (XTO). */
  housekeeping(): void {
    for (const [mac, p] of this.pending) {
      p.attemptsLeft--;
      if (p.attemptsLeft <= 1) {
        this.pending.delete(mac);
        this.stats.timeouts++;
        this.out.push({
          type: esl.ESL_XFER_TIMEOUT,
          item: { mac, dataVer: p.dataVer, at: this.clock.now() },
        });
      }
    }
  }

  private onCommand(topic: string, payload: Buffer): void {
    let body: { payload?: { items?: esl.ApPushItemT[]; macs?: string[] } };
    try {
      body = JSON.parse(payload.toString());
    } catch {
      return;
    }
    if (topic === deviceCommandTopic(this.id, esl.AP_PUSH)) {
      for (const it of body.payload?.items ?? []) {
        this.stats.pushesReceived++;
        // OEPL SDA>: a new item for a MAC replaces its pending one (latest wins); a new MAC
        // needs a free slot (NOQ> when all 250 are taken).
        if (!this.pending.has(it.mac) && this.pending.size >= this.maxPending) {
          this.stats.queueFull++;
          this.out.push({
            type: esl.ESL_PUSH_NACK,
            item: { mac: it.mac, dataVer: it.dataVer, reason: 'queue_full' },
          });
          continue;
        }
        this.pending.set(it.mac, {
          dataVer: it.dataVer,
          dataType: it.dataType,
          data: Buffer.from(it.data, 'base64'),
          attemptsLeft: it.attempts + 1,
        });
      }
    } else if (topic === deviceCommandTopic(this.id, esl.AP_CANCEL)) {
      for (const mac of body.payload?.macs ?? []) this.pending.delete(mac); // CXD>
    }
  }

  // ---------- radio side (called by tags on the simulated clock) ----------

  checkin(tag: SimTag): Pending | undefined {
    const c: esl.TagCheckinT = {
      mac: tag.mac,
      at: this.clock.now(),
      batteryMv: tag.batteryMv,
      temperature: tag.temperature,
      rssi: tag.rssi,
      lqi: tag.lqi,
      wakeReason: tag.wakeReason,
    };
    this.out.push({ type: esl.ESL_CHECKIN, item: c });
    return this.pending.get(tag.mac);
  }

  /** BLOCK_REQUEST: only one tag downloads at a time. */
  claim(mac: string): boolean {
    if (this.busyMac && this.busyMac !== mac) {
      this.stats.busyAnswers++;
      return false;
    }
    this.busyMac = mac;
    return true;
  }

  releaseRadio(mac: string): void {
    if (this.busyMac === mac) this.busyMac = null;
  }

  /** XFER_COMPLETE: always acked to the tag, forwarded once per MAC in a row (lastAckMac). */
  xferComplete(mac: string, dataVer: string): void {
    const p = this.pending.get(mac);
    if (p && p.dataVer === dataVer) this.pending.delete(mac);
    if (this.lastAckMac === mac) {
      this.stats.completesDeduped++;
      return;
    }
    this.lastAckMac = mac;
    this.stats.completesForwarded++;
    this.out.push({ type: esl.ESL_XFER_COMPLETE, item: { mac, dataVer, at: this.clock.now() } });
  }

  /** Publishes what the radio collected (QoS1) and waits for the edge's PUBACKs. */
  async flush(): Promise<void> {
    const c = this.client;
    if (!c) return;
    const sends: Promise<unknown>[] = [];
    // Runs of one type become one message each, in order; MQTT keeps the order on the
    // connection (a check-in after a reboot must not overtake the XFC before it).
    const out = this.out.splice(0);
    for (let i = 0; i < out.length; ) {
      const type = out[i]!.type;
      const items: unknown[] = [];
      while (i < out.length && out[i]!.type === type && items.length < 500) items.push(out[i++]!.item);
      const body = JSON.stringify({ id: `${this.id}-${++this.n}`, ts: this.clock.now(), items });
      sends.push(c.publishAsync(deviceEventTopic(this.id, type), body, { qos: 1 }));
    }
    await Promise.all(sends);
  }

  /**
   * A round trip (retained state, QoS1): every command the edge published before this
   * call has reached this AP when it resolves (same connection, in order).
   */
  async sync(): Promise<void> {
    await this.client?.publishAsync(`dev/${this.id}/state`, JSON.stringify({ at: this.clock.now() }), {
      qos: 1,
      retain: true,
    });
  }

  async close(): Promise<void> {
    await this.client?.endAsync(true).catch(() => undefined);
    this.client = null;
  }
}

export interface EslWorldOptions {
  brokerUrl: string;
  aps: Array<{ id: string; password: string }>;
  clock?: SimClock;
  seed?: number;
  /** Radio payload throughput (OEPL: ~5 kbyte/s). */
  bytesPerS?: number;
  /** Per-block cost beyond the payload: request, AP fetch (pleaseWaitMs 140 at high-speed serial), ack. */
  blockOverheadMs?: number;
}

export class EslWorld {
  readonly clock: SimClock;
  readonly aps = new Map<string, SimAp>();
  readonly tags = new Map<string, SimTag>();
  private readonly rng: Rng;
  private readonly bytesPerS: number;
  private readonly blockOverheadMs: number;
  private started = false;

  constructor(private readonly o: EslWorldOptions) {
    this.clock = o.clock ?? new SimClock(0);
    this.rng = mulberry32(o.seed ?? 1);
    this.bytesPerS = o.bytesPerS ?? 5000;
    this.blockOverheadMs = o.blockOverheadMs ?? 140;
    for (const a of o.aps) this.aps.set(a.id, new SimAp(a.id, a.password, this.clock));
  }

  addTag(spec: SimTagSpec): SimTag {
    const t: SimTag = {
      mac: spec.mac,
      ap: spec.ap,
      size: spec.size,
      bpp: spec.bpp,
      intervalS: spec.intervalS ?? esl.OEPL.intervalBaseS,
      batteryMv: spec.batteryMv ?? 2900 + Math.round(this.rng() * 100),
      dieAt: spec.dieAt ?? Number.POSITIVE_INFINITY,
      faults: new Set(spec.faults ?? []),
      shown: undefined,
      shownAt: 0,
      history: [],
      wakes: 0,
      busy: 0,
      completesSent: 0,
      wakeReason: 0xfc, // FIRSTBOOT
      epoch: 0,
      attempts: 0,
      sleepAvgS: spec.intervalS ?? esl.OEPL.intervalBaseS,
      rssi: -60 - Math.round(this.rng() * 30),
      lqi: 100 + Math.round(this.rng() * 100),
      temperature: 19 + Math.round(this.rng() * 4),
    };
    this.tags.set(t.mac, t);
    if (this.started) this.scheduleFirst(t, spec.phaseMs);
    else this.phases.set(t.mac, spec.phaseMs);
    return t;
  }

  private readonly phases = new Map<string, number | undefined>();

  async start(): Promise<void> {
    await Promise.all([...this.aps.values()].map((a) => a.connect(this.o.brokerUrl)));
    this.started = true;
    for (const t of this.tags.values()) this.scheduleFirst(t, this.phases.get(t.mac));
    const hk = () => {
      for (const a of this.aps.values()) a.housekeeping();
      this.clock.after(60_000, hk);
    };
    this.clock.after(60_000, hk);
  }

  private scheduleFirst(t: SimTag, phaseMs: number | undefined): void {
    if (t.faults.has('never_wakes')) return;
    this.scheduleWake(t, phaseMs ?? Math.floor(this.rng() * t.intervalS * 1000));
  }

  private scheduleWake(t: SimTag, inMs: number): void {
    const epoch = t.epoch;
    this.clock.after(inMs, () => {
      if (t.epoch === epoch) this.wake(t);
    });
  }

  /** Power cycle / watchdog: the image is gone, the tag checks in with reason 0xFE soon. */
  reboot(mac: string): void {
    const t = this.tags.get(mac)!;
    t.epoch++;
    t.shown = undefined;
    t.wakeReason = 0xfe;
    this.aps.get(t.ap)?.releaseRadio(mac);
    this.scheduleWake(t, 1000 + Math.floor(this.rng() * 1000));
  }

  private wake(t: SimTag): void {
    const now = this.clock.now();
    if (now >= t.dieAt || t.batteryMv < esl.OEPL.batteryMinimumMv) return; // dead: silence
    t.wakes++;
    const ap = this.aps.get(t.ap)!;
    if (!ap.online) {
      // No AVAIL_DATA_INFO: sleep = 40 + (600 - 40) * attempts / 14, smoothed over 8
      // samples (OEPL powermgt), so a tag without its AP backs off towards 600 s.
      t.attempts = Math.min(14, t.attempts + 1);
      const target =
        esl.OEPL.intervalBaseS + ((esl.OEPL.intervalMaxS - esl.OEPL.intervalBaseS) * t.attempts) / 14;
      t.sleepAvgS = (t.sleepAvgS * 7 + target) / 8;
      this.scheduleWake(t, Math.round(t.sleepAvgS * 1000));
      return;
    }
    t.attempts = 0;
    t.sleepAvgS = t.intervalS;
    const item = ap.checkin(t);
    t.wakeReason = 0; // TIMED from now on
    if (!item || item.dataVer === t.shown) {
      this.scheduleWake(t, t.intervalS * 1000);
      return;
    }
    if (!ap.claim(t.mac)) {
      // BUSY: content is pending, so try again within seconds instead of sleeping.
      t.busy++;
      this.scheduleWake(t, 1200 + Math.floor(this.rng() * 1800));
      return;
    }
    this.transfer(t, ap, item);
  }

  private transfer(t: SimTag, ap: SimAp, item: Pending): void {
    ap.stats.transfers++;
    const epoch = t.epoch;
    const bytes = item.data.length;
    const blocks = Math.ceil(bytes / esl.OEPL.blockBytes);
    let ms = 0;
    for (let b = 0; b < blocks; b++) {
      const len = Math.min(esl.OEPL.blockBytes, bytes - b * esl.OEPL.blockBytes);
      ms += (len / this.bytesPerS) * 1000 + this.blockOverheadMs;
      if (t.faults.has('lost_block_ack')) {
        // ~1 in 4 parts missed: a BLOCK_PARTIAL_REQUEST with the missing-parts bitmap
        const parts = Math.ceil(len / esl.OEPL.partBytes);
        const lost = Math.max(1, Math.floor(parts / 4));
        ms += ((lost * esl.OEPL.partBytes) / this.bytesPerS) * 1000 + this.blockOverheadMs;
      }
    }
    if (t.faults.has('xfer_fail')) {
      // Breaks off after the first block; the tag backs off as after any failed transfer.
      this.clock.after(ms / blocks, () => {
        ap.releaseRadio(t.mac);
        if (t.epoch === epoch) this.scheduleWake(t, t.intervalS * 1000);
      });
      return;
    }
    this.clock.after(ms, () => {
      ap.releaseRadio(t.mac);
      if (t.epoch !== epoch) return;
      const current = ap.pending.get(t.mac);
      if (!current || current.dataVer !== item.dataVer) {
        // Replaced or cancelled while downloading (CANCEL_XFER): newer content waits.
        this.scheduleWake(t, 1200 + Math.floor(this.rng() * 1800));
        return;
      }
      // The tag checks the image against dataVer before it displays it.
      const ver = createHash('md5').update(item.data).digest('hex').slice(0, 16);
      if (ver !== item.dataVer) {
        this.scheduleWake(t, t.intervalS * 1000);
        return;
      }
      t.shown = ver;
      t.shownAt = this.clock.now();
      t.history.push(ver);
      t.completesSent++;
      ap.xferComplete(t.mac, ver);
      if (t.faults.has('dup_complete')) {
        // The ACK was lost: XFER_COMPLETE again after a while (another tag may have
        // completed in between, so the AP forwards the repeat).
        this.clock.after(3000 + Math.floor(this.rng() * 5000), () => {
          if (t.epoch !== epoch) return;
          t.completesSent++;
          ap.xferComplete(t.mac, ver);
        });
      }
      this.scheduleWake(t, t.intervalS * 1000);
    });
  }

  /** Advances the clock to `until` in slices, syncing with the edge after each. */
  async run(
    until: number,
    opts: { sliceMs?: number; afterSlice?: () => Promise<void> | void; stop?: () => boolean } = {},
  ): Promise<void> {
    const slice = opts.sliceMs ?? 1000;
    await this.sync();
    while (this.clock.now() < until) {
      const next = Math.min(until, this.clock.now() + slice);
      this.clock.runUntil(next);
      await Promise.all([...this.aps.values()].map((a) => a.flush()));
      await opts.afterSlice?.();
      if (opts.stop?.()) return;
    }
  }

  /**
   * Runs the simulated clock at wall-clock pace (times `speed`) until `stop()`: for a
   * process whose edge agent uses real time (the `npm start` demo). The clock must
   * have started at `Date.now()`.
   */
  runRealtime(speed = 1, tickMs = 100): { stop(): Promise<void> } {
    let stopped = false;
    const wall0 = Date.now();
    const sim0 = this.clock.now();
    const loop = (async () => {
      while (!stopped) {
        await this.run(sim0 + (Date.now() - wall0) * speed, { sliceMs: 1000 });
        await new Promise((r) => setTimeout(r, tickMs));
      }
    })();
    return {
      stop: async () => {
        stopped = true;
        await loop.catch(() => undefined);
      },
    };
  }

  /** Waits until every AP has what the edge published so far. */
  async sync(): Promise<void> {
    await Promise.all([...this.aps.values()].map((a) => a.sync()));
  }

  async close(): Promise<void> {
    await Promise.all([...this.aps.values()].map((a) => a.close()));
  }
}
