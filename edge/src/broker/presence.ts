import type { Client } from 'aedes';

export type OfflineReason = 'disconnected' | 'keepalive_timeout' | 'taken_over' | 'agent_restart';

export interface DeviceInfo {
  online: boolean;
  connectedAt?: number;
  lastSeen?: number;
  connections: number;
  events: number;
  rejected: number;
}

/**
 * Device presence [PRESENCE-DEV-1]. A device is online while it has at least one live
 * connection; `device.online` fires on 0 -> 1 connections and `device.offline` on 1 -> 0.
 * A client taken over by a new connection with the same client id is closed by aedes;
 * counting connections (not client ids) means its late disconnect can never produce an
 * offline after the new online, whatever order aedes emits the two in.
 */
export class Presence {
  private readonly live = new Map<string, Set<Client>>();
  private readonly info = new Map<string, DeviceInfo>();
  private readonly reasons = new WeakMap<Client, OfflineReason>();

  constructor(
    private readonly now: () => number,
    private readonly emit: (
      kind: 'online' | 'offline',
      device: string,
      reason: string,
      clientId: string,
    ) => void,
  ) {}

  device(id: string): DeviceInfo {
    let i = this.info.get(id);
    if (!i) {
      i = { online: false, connections: 0, events: 0, rejected: 0 };
      this.info.set(id, i);
    }
    return i;
  }

  all(): ReadonlyMap<string, DeviceInfo> {
    return this.info;
  }

  online(): string[] {
    return [...this.live.keys()];
  }

  /** Tags every live connection, e.g. `agent_restart` before the broker closes them all. */
  markAll(reason: OfflineReason): void {
    for (const set of this.live.values()) for (const c of set) this.reasons.set(c, reason);
  }

  markReason(client: Client, reason: OfflineReason): void {
    if (!this.reasons.has(client)) this.reasons.set(client, reason);
  }

  connected(device: string, client: Client): void {
    let set = this.live.get(device);
    if (!set) {
      set = new Set();
      this.live.set(device, set);
    }
    set.add(client);
    const info = this.device(device);
    info.connections = set.size;
    info.lastSeen = this.now();
    if (set.size === 1) {
      info.online = true;
      info.connectedAt = this.now();
      this.emit('online', device, 'connected', client.id);
    }
  }

  disconnected(device: string, client: Client): void {
    const set = this.live.get(device);
    if (!set?.delete(client)) return;
    const info = this.device(device);
    info.connections = set.size;
    info.lastSeen = this.now();
    if (set.size === 0) {
      this.live.delete(device);
      info.online = false;
      this.emit('offline', device, this.reasons.get(client) ?? 'disconnected', client.id);
    }
  }

  seen(device: string): void {
    this.device(device).lastSeen = this.now();
  }
}
