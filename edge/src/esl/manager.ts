import { createHash } from 'node:crypto';
import {
  canonicalJson,
  checkDeviceEvent,
  deviceCommandTopic,
  esl,
  type Lane,
  newId,
  parseJsonPayload,
  type StorelinkError,
  type UnsequencedEvent,
} from '@storelink/protocols';
import type { Logger } from 'pino';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Done } from '../ingest/event.ts';
import { type RenderedImage, TagRenderer } from './render.ts';

type Size = esl.EslSize;
type Bpp = esl.EslBpp;
type Content = esl.LabelContent;
type FailReason = esl.TagFailReason;

export interface EslManagerOptions {
  site: string;
  gateway: string;
  now: () => number;
  logger: Logger;
  /** QoS1 publish on the local broker (edge → AP / display). */
  publish: (topic: string, payload: string, retain?: boolean) => Promise<void>;
  /** Appends an edge event to the outbox (resolves once stored). */
  append: (ev: UnsequencedEvent) => Promise<void>;
  registry?: Registry;
  renderer?: TagRenderer;
  /**
   * Durable per-tag state (wanted content, confirmed hash), so a restarted agent still
   * knows what every tag must show and what it confirmed [ESL-CONFIRM-1].
   */
  kv?: {
    get(key: string): Promise<string | undefined>;
    put(key: string, value: string): Promise<void>;
    keys(prefix: string, limit?: number): Promise<string[]>;
  };
  /** Bad input from an AP or display: count it and tell the device (like device ingest does). */
  onRefused?: (deviceId: string, topic: string, error: StorelinkError) => void;
  /** Below this a check-in raises LOW_BATTERY (OEPL tags stop at 2450 mV). */
  lowBatteryMv?: number;
  /** No check-in for this long after a push: the tag is reported failed (no_checkin/low_battery). */
  silentAfterMs?: number;
  /** Minutes an AP keeps a pushed image before it reports a timeout (OEPL attemptsLeft). */
  apAttemptsMin?: number;
  /** Pushes per tag and content before a transfer is given up (each timeout re-pushes). */
  maxPushes?: number;
  /** Most items the edge keeps outstanding at one AP (the AP holds 250). */
  apMaxPending?: number;
}

interface Want {
  campaignId: string;
  size: Size;
  bpp: Bpp;
  content: Content;
  dataVer: string;
  pushedAt: number;
  pushes: number;
  confirmed: boolean;
  failed: FailReason | null;
  /** The image rendered for the hash, kept until its first push (later pushes re-render). */
  image: RenderedImage | undefined;
}

export interface TagRecord {
  mac: string;
  kind: 'tag' | 'display';
  ap: string | undefined;
  want: Want | undefined;
  /** The dataVer the tag last confirmed (what it shows) [ESL-CONFIRM-1]. */
  shown: string | undefined;
  /** The dataVer we believe the AP holds for this tag (counts against its 250). */
  atAp: string | undefined;
  lastCheckin: number | undefined;
  batteryMv: number | undefined;
  temperature: number | undefined;
  rssi: number | undefined;
  lqi: number | undefined;
  lowBattery: boolean;
  silent: boolean;
  statusDirty: boolean;
}

interface ApQueue {
  /** macs whose image the AP holds */
  outstanding: Set<string>;
  /** macs waiting for a free AP slot, oldest first (a Set keeps insertion order) */
  waiting: Set<string>;
}

export interface EslStats {
  tags: number;
  confirmed: number;
  pending: number;
  failed: number;
  duplicateCompletions: number;
  staleCompletions: number;
  pushes: number;
  rendered: number;
  /** CPU milliseconds spent in the manager's synchronous work (render, hash, handlers). */
  cpuMs: number;
}

const AP_EVENTS = new Set(esl.ESL_AP_EVENTS);
const KV_PREFIX = 'esl!';
const MAX_PUSH_BYTES = 2 * 1024 * 1024;

/**
 * The edge ESL manager [ESL-CONFIRM-1][ESL-LATEST-1]: takes campaigns from the cloud,
 * renders each tag's image (sharp templates + built-in font), hashes it (OEPL dataVer),
 * hands it to the tag's access point over MQTT (`dev/{ap}/cmd/esl.push`), and turns the
 * AP's reports into per-tag campaign states for the cloud. It keeps per tag the wanted
 * content, what the AP holds and what the tag confirmed, plus battery, signal and last
 * check-in, and raises LOW_BATTERY / SILENT alerts.
 */
export class EslManager {
  readonly tags = new Map<string, TagRecord>();
  private readonly aps = new Map<string, ApQueue>();
  private readonly renderer: TagRenderer;
  private readonly lowBatteryMv: number;
  private readonly silentAfterMs: number;
  private readonly attempts: number;
  private readonly maxPushes: number;
  private readonly apMax: number;
  private readonly dirtyAps = new Set<string>();
  private readonly dirtyTags = new Set<string>();
  private readonly cancelled = new Set<string>();
  private readonly s = { duplicate: 0, stale: 0, pushes: 0, cpuUs: 0 };
  private readonly m: {
    pushes: Counter;
    completions: Counter<'kind'>;
    states: Counter<'state'>;
    pending: Gauge;
  } | null;

  constructor(private readonly o: EslManagerOptions) {
    this.renderer = o.renderer ?? new TagRenderer();
    this.lowBatteryMv = o.lowBatteryMv ?? 2600;
    this.silentAfterMs = o.silentAfterMs ?? (2 * esl.OEPL.intervalMaxS + 60) * 1000;
    this.attempts = o.apAttemptsMin ?? 15;
    this.maxPushes = o.maxPushes ?? 3;
    this.apMax = o.apMaxPending ?? esl.OEPL.apMaxPending;
    const registers = o.registry ? [o.registry] : [];
    this.m = o.registry
      ? {
          pushes: new Counter({
            name: 'storelink_edge_esl_pushes_total',
            help: 'tag images handed to ESL access points',
            registers,
          }),
          completions: new Counter({
            name: 'storelink_edge_esl_completions_total',
            help: 'tag transfer completions by kind: new, duplicate (repeated XFER_COMPLETE), stale (older content)',
            labelNames: ['kind'],
            registers,
          }),
          states: new Counter({
            name: 'storelink_edge_esl_tag_states_total',
            help: 'campaign tag states reported to the cloud',
            labelNames: ['state'],
            registers,
          }),
          pending: new Gauge({
            name: 'storelink_edge_esl_pending_tags',
            help: 'tags whose wanted content is not yet confirmed',
            registers,
            collect: () => undefined,
          }),
        }
      : null;
  }

  /** Rasterises the template layers (sharp); call once before campaigns. */
  prepare(): Promise<void> {
    return this.renderer.prepare();
  }

  handles(type: string): boolean {
    return AP_EVENTS.has(type);
  }

  // ---------- cloud commands ----------

  /** `esl.campaign`: render, hash, replace older content (latest wins), push. */
  async campaign(p: esl.EslCampaign): Promise<{ accepted: number; unchanged: number; superseded: number }> {
    await this.prepare();
    const events: UnsequencedEvent[] = [];
    let accepted = 0;
    let unchanged = 0;
    let superseded = 0;
    this.cpu(() => {
      for (const item of p.items) {
        const rec = this.record(item.tag, 'tag');
        if (item.ap && !rec.ap) rec.ap = item.ap;
        const img = this.renderer.render(item.size, item.bpp, item.content);
        const r = this.want(rec, p.campaignId, item.size, item.bpp, item.content, img.dataVer, events, img);
        if (r === 'unchanged') unchanged++;
        else accepted++;
        if (r === 'superseded') superseded++;
      }
      for (const d of p.displays ?? []) {
        const rec = this.record(d.display, 'display');
        rec.ap = d.display;
        const r = this.want(rec, p.campaignId, '2.9', 1, d.content, displayHash(d.content), events);
        if (r === 'unchanged') unchanged++;
        else accepted++;
        if (r === 'superseded') superseded++;
      }
    });
    await this.appendAll(events);
    await this.flush();
    return { accepted, unchanged, superseded };
  }

  /** `esl.cancel`: withdraw what is not confirmed yet. */
  async cancel(campaignId: string): Promise<{ cancelled: number }> {
    this.cancelled.add(campaignId);
    const events: UnsequencedEvent[] = [];
    const byAp = new Map<string, string[]>();
    for (const rec of this.tags.values()) {
      const w = rec.want;
      if (!w || w.campaignId !== campaignId || w.confirmed) continue;
      events.push(this.state(rec.mac, w, 'cancelled'));
      rec.want = undefined;
      this.dirtyTags.add(rec.mac);
      if (rec.ap) this.queue(rec.ap).waiting.delete(rec.mac);
      if (rec.atAp && rec.ap && rec.kind === 'tag') {
        const list = byAp.get(rec.ap) ?? [];
        list.push(rec.mac);
        byAp.set(rec.ap, list);
        this.release(rec);
      }
    }
    await this.appendAll(events);
    for (const [ap, macs] of byAp)
      for (let i = 0; i < macs.length; i += 250)
        await this.sendToDevice(ap, esl.AP_CANCEL, { macs: macs.slice(i, i + 250) });
    await this.flush();
    return { cancelled: events.length };
  }

  /** Decides what a tag must show; returns how it relates to what it had. */
  private want(
    rec: TagRecord,
    campaignId: string,
    size: Size,
    bpp: Bpp,
    content: Content,
    dataVer: string,
    events: UnsequencedEvent[],
    image?: RenderedImage,
  ): 'new' | 'superseded' | 'unchanged' {
    const old = rec.want;
    let result: 'new' | 'superseded' | 'unchanged' = 'new';
    if (old && !old.confirmed && old.campaignId !== campaignId) {
      // [ESL-LATEST-1] the older content will never count as displayed
      events.push(this.state(rec.mac, old, 'superseded'));
      result = 'superseded';
    }
    const w: Want = {
      campaignId,
      size,
      bpp,
      content,
      dataVer,
      pushedAt: this.o.now(),
      pushes: 0,
      confirmed: false,
      failed: null,
      image,
    };
    rec.want = w;
    if (rec.shown === dataVer) {
      // OEPL: same MD5 as the current image, no transfer; the tag already confirmed it.
      w.confirmed = true;
      w.image = undefined;
      events.push(this.state(rec.mac, w, 'confirmed'));
      if (rec.ap) this.queue(rec.ap).waiting.delete(rec.mac);
      return result === 'superseded' ? result : 'unchanged';
    }
    events.push(this.state(rec.mac, w, 'pushed'));
    this.schedulePush(rec);
    return result;
  }

  // ---------- AP and display events ----------

  /** An event from an AP or display on `dev/{id}/evt/esl.*`; PUBACK (`done`) after its effects are stored. */
  deviceEvent(deviceId: string, type: string, raw: Buffer, done: Done): void {
    const parsed = parseJsonPayload(raw, 1024 * 1024);
    const checked = parsed.ok ? checkDeviceEvent(type, parsed.value) : parsed;
    if (!checked.ok) {
      this.o.logger.warn({ device: deviceId, type, err: checked.error.message }, 'ESL event refused');
      this.o.onRefused?.(deviceId, `dev/${deviceId}/evt/${type}`, checked.error);
      done();
      return;
    }
    const value = (parsed as { value: unknown }).value;
    const events: UnsequencedEvent[] = [];
    this.cpu(() => {
      switch (type) {
        case esl.ESL_CHECKIN:
          for (const c of (value as { items: esl.TagCheckinT[] }).items) this.onCheckin(deviceId, c, events);
          break;
        case esl.ESL_XFER_COMPLETE:
          for (const x of (value as { items: esl.MacVerT[] }).items)
            this.onComplete(x.mac, x.dataVer, events);
          break;
        case esl.ESL_XFER_TIMEOUT:
          for (const x of (value as { items: esl.MacVerT[] }).items) this.onTimeout(x.mac, x.dataVer, events);
          break;
        case esl.ESL_PUSH_NACK:
          for (const x of (value as { items: Array<{ mac: string; dataVer: string }> }).items)
            this.onNack(x.mac, x.dataVer);
          break;
        case esl.ESL_SHOWN:
          this.onComplete(deviceId, (value as { hash: string }).hash, events);
          break;
      }
    });
    this.appendAll(events)
      .then(() => this.flush())
      .then(
        () => done(),
        (e: unknown) => done(e as Error),
      );
  }

  private onCheckin(ap: string, c: esl.TagCheckinT, events: UnsequencedEvent[]): void {
    const rec = this.record(c.mac, 'tag');
    if (rec.ap !== ap) {
      // The tag roamed: what the old AP holds is released there (it times out).
      if (rec.ap && rec.atAp) this.release(rec);
      rec.ap = ap;
    }
    rec.lastCheckin = c.at;
    rec.batteryMv = c.batteryMv;
    rec.temperature = c.temperature;
    rec.rssi = c.rssi;
    rec.lqi = c.lqi;
    rec.statusDirty = true;
    if (rec.silent) {
      rec.silent = false;
      events.push(this.alert(rec, 'SILENT', false));
    }
    const low = c.batteryMv < this.lowBatteryMv;
    if (low !== rec.lowBattery) {
      rec.lowBattery = low;
      events.push(this.alert(rec, 'LOW_BATTERY', low));
    }
    if (c.wakeReason >= esl.OEPL.wakeRebootMin) {
      // Boot, scan or watchdog: the tag lost its image; push the current content again.
      rec.shown = undefined;
      this.dirtyTags.add(rec.mac);
    }
    const w = rec.want;
    if (w && rec.shown !== w.dataVer && rec.atAp !== w.dataVer) this.schedulePush(rec);
  }

  private onComplete(mac: string, dataVer: string, events: UnsequencedEvent[]): void {
    const rec = this.tags.get(mac);
    if (!rec) return;
    if (rec.atAp === dataVer) this.release(rec);
    const w = rec.want;
    if (rec.shown === dataVer && (!w || w.dataVer !== dataVer || w.confirmed)) {
      // A repeated XFER_COMPLETE after a lost ack: counted once.
      this.s.duplicate++;
      this.m?.completions.inc({ kind: 'duplicate' });
      return;
    }
    rec.shown = dataVer;
    this.dirtyTags.add(mac);
    if (!w || w.dataVer !== dataVer) {
      // Older content finished after newer content was queued: not a confirmation.
      this.s.stale++;
      this.m?.completions.inc({ kind: 'stale' });
      if (w && rec.atAp !== w.dataVer) this.schedulePush(rec);
      return;
    }
    this.m?.completions.inc({ kind: 'new' });
    if (w.confirmed) return; // re-push after a reboot: already counted
    w.confirmed = true;
    events.push(this.state(mac, w, 'confirmed'));
  }

  private onTimeout(mac: string, dataVer: string, events: UnsequencedEvent[]): void {
    const rec = this.tags.get(mac);
    if (!rec || rec.atAp !== dataVer) return;
    this.release(rec);
    const w = rec.want;
    if (!w || w.confirmed || w.dataVer !== dataVer) return;
    const reason = this.reasonFor(rec, w);
    if (!w.failed) {
      w.failed = reason;
      events.push(this.state(mac, w, 'failed', reason));
    }
    // Keep trying while pushes are left; a later confirmation still counts.
    if (w.pushes < this.maxPushes) this.schedulePush(rec);
  }

  private onNack(mac: string, dataVer: string): void {
    const rec = this.tags.get(mac);
    if (!rec || rec.atAp !== dataVer || !rec.ap) return;
    // The AP was full (another pusher?): take it back and wait for a free slot.
    this.release(rec);
    this.schedulePush(rec);
  }

  private reasonFor(rec: TagRecord, w: Want): FailReason {
    const checkedIn = rec.lastCheckin !== undefined && rec.lastCheckin >= w.pushedAt;
    if (checkedIn) return 'transfer_failed';
    if (rec.batteryMv !== undefined && rec.batteryMv < this.lowBatteryMv) return 'low_battery';
    return 'no_checkin';
  }

  /**
   * Periodic: tags silent since their push are reported failed (once), SILENT alerts,
   * tag status telemetry. Driven by a timer in the agent and by the simulated clock in
   * tests and benchmarks.
   */
  async sweep(): Promise<void> {
    const now = this.o.now();
    const events: UnsequencedEvent[] = [];
    const status: Array<{
      tag: string;
      ap: string;
      batteryMv: number;
      temperature: number;
      rssi: number;
      lastCheckin: number;
    }> = [];
    for (const rec of this.tags.values()) {
      if (rec.kind !== 'tag') continue;
      const w = rec.want;
      const last = rec.lastCheckin ?? -Infinity;
      if (w && !w.confirmed && !w.failed && now - w.pushedAt >= this.silentAfterMs && last < w.pushedAt) {
        w.failed = this.reasonFor(rec, w);
        events.push(this.state(rec.mac, w, 'failed', w.failed));
      }
      const silentSince = Math.max(last, w?.pushedAt ?? -Infinity);
      if (!rec.silent && Number.isFinite(silentSince) && now - silentSince >= this.silentAfterMs) {
        rec.silent = true;
        events.push(this.alert(rec, 'SILENT', true));
      }
      if (rec.statusDirty && rec.ap && rec.lastCheckin !== undefined) {
        rec.statusDirty = false;
        status.push({
          tag: rec.mac,
          ap: rec.ap,
          batteryMv: rec.batteryMv ?? 0,
          temperature: rec.temperature ?? 0,
          rssi: rec.rssi ?? 0,
          lastCheckin: rec.lastCheckin,
        });
      }
    }
    for (let i = 0; i < status.length; i += 1000)
      events.push(this.event(esl.ESL_TAG_STATUS, this.o.gateway, { tags: status.slice(i, i + 1000) }));
    await this.appendAll(events);
  }

  stats(): EslStats {
    let confirmed = 0;
    let pending = 0;
    let failed = 0;
    for (const r of this.tags.values()) {
      if (!r.want) continue;
      if (r.want.confirmed) confirmed++;
      else {
        pending++;
        if (r.want.failed) failed++;
      }
    }
    this.m?.pending.set(pending);
    return {
      tags: this.tags.size,
      confirmed,
      pending,
      failed,
      duplicateCompletions: this.s.duplicate,
      staleCompletions: this.s.stale,
      pushes: this.s.pushes,
      rendered: this.renderer.rendered,
      cpuMs: this.s.cpuUs / 1000,
    };
  }

  // ---------- pushing ----------

  private schedulePush(rec: TagRecord): void {
    if (!rec.ap || !rec.want) return;
    const q = this.queue(rec.ap);
    q.waiting.delete(rec.mac);
    q.waiting.add(rec.mac);
    this.dirtyAps.add(rec.ap);
  }

  private release(rec: TagRecord): void {
    if (rec.ap) {
      const q = this.queue(rec.ap);
      q.outstanding.delete(rec.mac);
      if (q.waiting.size > 0) this.dirtyAps.add(rec.ap);
    }
    rec.atAp = undefined;
  }

  /** Publishes what waits, per AP, within its free slots. */
  async flush(): Promise<void> {
    if (this.dirtyAps.size === 0) return;
    await this.prepare(); // re-pushes after a restart render before any campaign did
    const aps = [...this.dirtyAps];
    this.dirtyAps.clear();
    for (const ap of aps) {
      const q = this.queue(ap);
      const batch: esl.ApPushItemT[] = [];
      let bytes = 0;
      const sendBatch = async () => {
        if (batch.length === 0) return;
        const items = batch.splice(0);
        bytes = 0;
        await this.sendToDevice(ap, esl.AP_PUSH, { items });
      };
      const display: TagRecord[] = [];
      this.cpu(() => {
        for (const mac of q.waiting) {
          const rec = this.tags.get(mac)!;
          const w = rec.want;
          if (!w || rec.ap !== ap) {
            q.waiting.delete(mac);
            continue;
          }
          if (rec.kind === 'display') {
            q.waiting.delete(mac);
            display.push(rec);
            continue;
          }
          // An AP slot is taken only by a tag without one; replacing its item keeps the slot.
          if (!q.outstanding.has(mac) && q.outstanding.size >= this.apMax) break;
          q.waiting.delete(mac);
          const img = w.image ?? this.renderer.render(w.size, w.bpp, w.content);
          w.image = undefined;
          q.outstanding.add(mac);
          rec.atAp = w.dataVer;
          w.pushes++;
          this.s.pushes++;
          this.m?.pushes.inc();
          const data = img.raw.toString('base64');
          batch.push({ mac, dataVer: img.dataVer, dataType: img.dataType, data, attempts: this.attempts });
          bytes += data.length;
          if (bytes > MAX_PUSH_BYTES || batch.length >= 250) break;
        }
      });
      await sendBatch();
      for (const rec of display) {
        const w = rec.want!;
        // Retained: a screen that (re)connects gets the latest content at once [ESL-LATEST-1].
        await this.o.publish(
          deviceCommandTopic(rec.mac, esl.DISPLAY_SHOW),
          JSON.stringify({
            id: newId(this.o.now()),
            expiresAt: this.o.now() + 24 * 3600_000,
            payload: { hash: w.dataVer, content: w.content },
          }),
          true,
        );
      }
      if (q.waiting.size > 0 && q.outstanding.size < this.apMax) this.dirtyAps.add(ap);
    }
    if (this.dirtyAps.size > 0 && aps.length > 0) await this.flush();
  }

  private sendToDevice(device: string, type: string, payload: unknown): Promise<void> {
    const now = this.o.now();
    const body = { id: newId(now), expiresAt: now + 3600_000, payload };
    return this.o.publish(deviceCommandTopic(device, type), JSON.stringify(body));
  }

  // ---------- helpers ----------

  private queue(ap: string): ApQueue {
    let q = this.aps.get(ap);
    if (!q) {
      q = { outstanding: new Set(), waiting: new Set() };
      this.aps.set(ap, q);
    }
    return q;
  }

  private record(mac: string, kind: 'tag' | 'display'): TagRecord {
    let r = this.tags.get(mac);
    if (!r) {
      r = {
        mac,
        kind,
        ap: undefined,
        want: undefined,
        shown: undefined,
        atAp: undefined,
        lastCheckin: undefined,
        batteryMv: undefined,
        temperature: undefined,
        rssi: undefined,
        lqi: undefined,
        lowBattery: false,
        silent: false,
        statusDirty: false,
      };
      this.tags.set(mac, r);
    }
    return r;
  }

  private state(tag: string, w: Want, state: esl.TagState, reason?: FailReason): UnsequencedEvent {
    this.m?.states.inc({ state });
    this.dirtyTags.add(tag);
    const p: esl.EslTagState = { campaignId: w.campaignId, tag, state, dataVer: w.dataVer, at: this.o.now() };
    if (reason) p.reason = reason;
    return this.event(esl.ESL_TAG_STATE, this.reporter(tag), p);
  }

  private alert(rec: TagRecord, code: 'LOW_BATTERY' | 'SILENT', active: boolean): UnsequencedEvent {
    const p: Record<string, unknown> = { tag: rec.mac, code, active };
    if (rec.batteryMv !== undefined) p.batteryMv = rec.batteryMv;
    if (rec.lastCheckin !== undefined) p.lastCheckin = rec.lastCheckin;
    (active ? this.o.logger.warn : this.o.logger.info).call(this.o.logger, p, `ESL alert ${code}`);
    return this.event(esl.ESL_ALERT, this.reporter(rec.mac), p);
  }

  /**
   * The envelope's `device` is the device that reported (the AP, or the display itself),
   * never the tag: tags are not MQTT devices and must not fill the fleet's device list.
   */
  private reporter(tag: string): string {
    const r = this.tags.get(tag);
    if (r?.kind === 'display') return r.mac;
    return r?.ap ?? this.o.gateway;
  }

  private event(type: string, device: string, payload: unknown): UnsequencedEvent {
    const now = this.o.now();
    const lane: Lane = type === esl.ESL_TAG_STATUS ? 'telemetry' : 'event';
    return {
      id: newId(now),
      type,
      device: /^[A-Za-z0-9_.-]{1,64}$/.test(device) ? device : this.o.gateway,
      gateway: this.o.gateway,
      site: this.o.site,
      ts: now,
      rts: now,
      lane,
      payload,
    };
  }

  private async appendAll(events: UnsequencedEvent[]): Promise<void> {
    await this.persist();
    for (const e of events) await this.o.append(e);
  }

  /** Writes the changed tag records (before their events are acknowledged anywhere). */
  private async persist(): Promise<void> {
    const kv = this.o.kv;
    if (!kv || this.dirtyTags.size === 0) return;
    const macs = [...this.dirtyTags];
    this.dirtyTags.clear();
    for (let i = 0; i < macs.length; i += 256)
      await Promise.all(
        macs.slice(i, i + 256).map((mac) => {
          const r = this.tags.get(mac);
          if (!r) return undefined;
          const w = r.want;
          const doc = {
            kind: r.kind,
            ap: r.ap,
            shown: r.shown,
            want: w && { ...w, image: undefined },
          };
          return kv.put(KV_PREFIX + mac, JSON.stringify(doc));
        }),
      );
  }

  /** Restores what a previous run persisted; call once before the broker accepts APs. */
  async load(): Promise<number> {
    const kv = this.o.kv;
    if (!kv) return 0;
    let n = 0;
    for (const key of await kv.keys(KV_PREFIX)) {
      const raw = await kv.get(key);
      if (!raw) continue;
      const doc = JSON.parse(raw) as { kind: 'tag' | 'display'; ap?: string; shown?: string; want?: Want };
      const rec = this.record(key.slice(KV_PREFIX.length), doc.kind);
      rec.ap = doc.ap;
      rec.shown = doc.shown;
      rec.want = doc.want ? { ...doc.want, image: undefined } : undefined;
      // What the AP holds is unknown after a restart: unconfirmed content is pushed again
      // (the AP replaces its item for the MAC, so this costs a slot at most once).
      if (rec.want && !rec.want.confirmed) this.schedulePush(rec);
      n++;
    }
    return n;
  }

  private cpu(fn: () => void): void {
    const t = process.cpuUsage();
    try {
      fn();
    } finally {
      const d = process.cpuUsage(t);
      this.s.cpuUs += d.user + d.system;
    }
  }
}

/** Display content hash: first 8 bytes of the MD5 of the canonical JSON [ESL-CONFIRM-1]. */
export function displayHash(content: Content): string {
  return createHash('md5').update(canonicalJson(content)).digest('hex').slice(0, 16);
}
