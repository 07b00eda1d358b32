import { statfsSync } from 'node:fs';
import type { Lane } from '@storelink/protocols';

/**
 * Free-space watch of the outbox data directory [OUTBOX-DISK-1].
 *
 * Why a reserve and not "drop old telemetry when the disk is full": in LevelDB a delete is
 * itself a write (a tombstone in the log, then a compaction that rewrites tables before
 * the old files go), so dropping events cannot free space quickly — at ENOSPC it cannot
 * even be written. What keeps `tx` flowing is refusing `telemetry` and `event` appends
 * while free space is below a reserve, so that the reserve is left for `tx`, acks (the
 * deletes that eventually free space), KV writes and LevelDB's own compactions.
 */

export interface FsSpace {
  /** Blocks available to an unprivileged writer. */
  bavail: number;
  /** Total blocks of the filesystem. */
  blocks: number;
  bsize: number;
}

export interface DiskGuardOptions {
  /** Absolute reserve in bytes; overrides the computed default when set. */
  reserveBytes?: number;
  /** Default reserve = max(minReserveBytes, reservePct % of the filesystem) ... */
  minReserveBytes?: number;
  reservePct?: number;
  /** ... capped at this share of the filesystem (tiny filesystems), default 0.5. */
  maxReserveShare?: number;
  /** `tx` is refused too below this (never run LevelDB into ENOSPC), default min(1 MiB, reserve / 4). */
  hardFloorBytes?: number;
  /** statfs is cached for this long (default 1000 ms) ... */
  refreshMs?: number;
  /** ... or until this many appends were admitted since (default 100). */
  refreshEvery?: number;
  /** Injected for tests; default `fs.statfsSync`. */
  statfs?: (dir: string) => FsSpace;
  now: () => number;
  /** Told when the guard enters or leaves the low state. */
  onChange?: (low: boolean, free: number, reserve: number) => void;
}

export const DISK_DEFAULTS = {
  minReserveBytes: 16 * 2 ** 20,
  reservePct: 2,
  maxReserveShare: 0.5,
  refreshMs: 1000,
  refreshEvery: 100,
};

export interface DiskGuardStatus {
  freeBytes: number;
  totalBytes: number;
  reserveBytes: number;
  hardFloorBytes: number;
  /** Free space is below the reserve: telemetry and event appends are refused. */
  low: boolean;
  /** Appends refused for disk space since start, per lane. */
  refused: Record<Lane, number>;
  /** statfs failed last time (the guard then admits everything). */
  error: string | null;
}

export class DiskGuard {
  private free = Number.POSITIVE_INFINITY;
  private total = 0;
  private at = Number.NEGATIVE_INFINITY;
  private admitted = 0;
  private wasLow = false;
  private error: string | null = null;
  readonly refused: Record<Lane, number> = { tx: 0, event: 0, telemetry: 0 };
  private readonly statfs: (dir: string) => FsSpace;

  constructor(
    private readonly dir: string,
    private readonly o: DiskGuardOptions,
  ) {
    this.statfs = o.statfs ?? ((d) => statfsSync(d));
    this.refresh();
  }

  /** Re-reads free space now (also called after every write error). */
  refresh(): void {
    this.at = this.o.now();
    this.admitted = 0;
    try {
      const s = this.statfs(this.dir);
      this.free = s.bavail * s.bsize;
      this.total = s.blocks * s.bsize;
      this.error = null;
    } catch (err) {
      // Cannot tell: admit everything rather than refuse on a broken statfs.
      this.free = Number.POSITIVE_INFINITY;
      this.error = (err as Error).message;
    }
    const low = this.free < this.reserve();
    if (low !== this.wasLow) {
      this.wasLow = low;
      this.o.onChange?.(low, this.free, this.reserve());
    }
  }

  reserve(): number {
    const o = this.o;
    if (o.reserveBytes !== undefined) return o.reserveBytes;
    const byPct = (this.total * (o.reservePct ?? DISK_DEFAULTS.reservePct)) / 100;
    const want = Math.max(o.minReserveBytes ?? DISK_DEFAULTS.minReserveBytes, byPct);
    const cap = this.total * (o.maxReserveShare ?? DISK_DEFAULTS.maxReserveShare);
    return this.total > 0 ? Math.min(want, cap) : want;
  }

  hardFloor(): number {
    return this.o.hardFloorBytes ?? Math.min(2 ** 20, this.reserve() / 4);
  }

  /**
   * Whether an append of `lane` may be written now [OUTBOX-DISK-1]: below the reserve
   * only `tx` is admitted, below the hard floor nothing. Returns the refusal reason.
   */
  refuse(lane: Lane): 'disk' | undefined {
    const o = this.o;
    if (
      this.o.now() - this.at >= (o.refreshMs ?? DISK_DEFAULTS.refreshMs) ||
      this.admitted >= (o.refreshEvery ?? DISK_DEFAULTS.refreshEvery)
    )
      this.refresh();
    const floor = lane === 'tx' ? this.hardFloor() : this.reserve();
    if (this.free < floor) {
      this.refused[lane]++;
      return 'disk';
    }
    this.admitted++;
    return undefined;
  }

  status(): DiskGuardStatus {
    return {
      freeBytes: Number.isFinite(this.free) ? this.free : -1,
      totalBytes: this.total,
      reserveBytes: this.reserve(),
      hardFloorBytes: this.hardFloor(),
      low: this.wasLow,
      refused: { ...this.refused },
      error: this.error,
    };
  }
}
