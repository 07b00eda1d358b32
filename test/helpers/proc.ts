import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, readFileSync, type WriteStream } from 'node:fs';
import { sleep } from './ports.ts';

export interface ProcOptions {
  /** Short name for logs. */
  name: string;
  command: string;
  args: string[];
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Child stdout+stderr are appended here (kept across restarts, so a crash loop can be read back). */
  logFile: string;
  /** Polled after spawn until it answers 200 (e.g. the edge's /readyz). */
  readyUrl?: string;
  readyTimeoutMs?: number;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/**
 * One supervised child process: start, wait ready, SIGKILL, restart. Peak RSS is sampled
 * from /proc while it runs (and VmHWM read just before a kill), so benchmarks can report it.
 */
export class Proc {
  private child: ChildProcess | undefined;
  private exited: Promise<Exit> | undefined;
  private log: WriteStream;
  private rssTimer: NodeJS.Timeout | undefined;
  /** Highest resident set seen over every incarnation, in bytes. */
  peakRssBytes = 0;
  starts = 0;
  lastExit: Exit | undefined;

  constructor(readonly opts: ProcOptions) {
    this.log = createWriteStream(opts.logFile, { flags: 'a' });
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Spawns the process; resolves once `readyUrl` answers 200 (or right away without one). */
  async start(): Promise<void> {
    if (this.running) throw new Error(`${this.opts.name} already running`);
    this.starts++;
    this.log.write(`\n==== start #${this.starts} ${new Date().toISOString()} ====\n`);
    const child = spawn(this.opts.command, this.opts.args, {
      cwd: this.opts.cwd,
      env: { ...process.env, ...this.opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child = child;
    child.stdout?.pipe(this.log, { end: false });
    child.stderr?.pipe(this.log, { end: false });
    this.exited = new Promise<Exit>((resolve) => {
      child.once('exit', (code, signal) => {
        this.lastExit = { code, signal };
        resolve({ code, signal });
      });
    });
    this.rssTimer = setInterval(() => this.sampleRss(), 200);
    this.rssTimer.unref();
    if (this.opts.readyUrl) await this.waitReady();
  }

  private async waitReady(): Promise<void> {
    const deadline = Date.now() + (this.opts.readyTimeoutMs ?? 30_000);
    for (;;) {
      if (!this.running) {
        throw new Error(
          `${this.opts.name} exited before ready (${JSON.stringify(this.lastExit)}); log tail:\n${this.logTail()}`,
        );
      }
      try {
        const res = await fetch(this.opts.readyUrl!, { signal: AbortSignal.timeout(2000) });
        if (res.status === 200) return;
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) {
        throw new Error(`${this.opts.name} not ready at ${this.opts.readyUrl}; log tail:\n${this.logTail()}`);
      }
      await sleep(50);
    }
  }

  private sampleRss(): void {
    const pid = this.child?.pid;
    if (!pid || !this.running) return;
    try {
      const status = readFileSync(`/proc/${pid}/status`, 'utf8');
      const hwm = /VmHWM:\s+(\d+) kB/.exec(status);
      const rss = /VmRSS:\s+(\d+) kB/.exec(status);
      const v = Math.max(Number(hwm?.[1] ?? 0), Number(rss?.[1] ?? 0)) * 1024;
      if (v > this.peakRssBytes) this.peakRssBytes = v;
    } catch {
      // raced with exit
    }
  }

  /** Current resident set in bytes (0 when not running). */
  rssBytes(): number {
    const pid = this.child?.pid;
    if (!pid || !this.running) return 0;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      return Number(m?.[1] ?? 0) * 1024;
    } catch {
      return 0;
    }
  }

  /** Sends `signal` and waits for the exit. */
  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<Exit | undefined> {
    if (!this.child || !this.exited) return undefined;
    this.sampleRss();
    if (this.running) this.child.kill(signal);
    const exit = await this.exited;
    clearInterval(this.rssTimer);
    return exit;
  }

  /** SIGTERM, then SIGKILL after `graceMs`. */
  async stop(graceMs = 10_000): Promise<Exit | undefined> {
    if (!this.child || !this.exited) return undefined;
    if (!this.running) return this.exited;
    this.sampleRss();
    this.child.kill('SIGTERM');
    const t = setTimeout(() => this.child?.kill('SIGKILL'), graceMs);
    const exit = await this.exited;
    clearTimeout(t);
    clearInterval(this.rssTimer);
    return exit;
  }

  async restart(): Promise<void> {
    await this.kill('SIGKILL');
    await this.start();
  }

  logTail(bytes = 4000): string {
    try {
      const all = readFileSync(this.opts.logFile, 'utf8');
      return all.slice(-bytes);
    } catch {
      return '';
    }
  }

  async dispose(): Promise<void> {
    await this.kill('SIGKILL');
    await new Promise((r) => this.log.end(r));
  }
}
