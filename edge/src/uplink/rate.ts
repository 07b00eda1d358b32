/**
 * Drain rate over a sliding window: events the cloud acknowledged per second, and the
 * estimated time until the current backlog is gone at that rate.
 */
export class DrainRate {
  private readonly samples: Array<{ at: number; n: number }> = [];

  constructor(
    private readonly now: () => number,
    private readonly windowMs = 30_000,
  ) {}

  record(events: number): void {
    if (events <= 0) return;
    this.samples.push({ at: this.now(), n: events });
    this.trim();
  }

  private trim(): void {
    const from = this.now() - this.windowMs;
    while (this.samples.length > 0 && this.samples[0]!.at < from) this.samples.shift();
  }

  /** Events per second over the window. */
  perSecond(): number {
    this.trim();
    const total = this.samples.reduce((a, s) => a + s.n, 0);
    return total / (this.windowMs / 1000);
  }

  /** Seconds to drain `depth` events at the current rate; null when nothing drains. */
  etaSeconds(depth: number): number | null {
    if (depth === 0) return 0;
    const r = this.perSecond();
    return r > 0 ? depth / r : null;
  }
}
