/**
 * Campaign CLI (docs/esl.md): follows a price campaign through the cloud HTTP API with a
 * progress bar, then prints the completion report (every tag that did not confirm and
 * why). Uses only `fetch`, so other tools (the `npm start` demo) reuse `followCampaign`.
 *
 *   npx tsx cloud/src/prices/cli.ts follow <campaignId> [--url http://127.0.0.1:8080] [--timeout 1800]
 *   npx tsx cloud/src/prices/cli.ts create --site demo-store [--skus A,B] [--url ...]
 *   npx tsx cloud/src/prices/cli.ts report <campaignId> [--url ...]
 *   npx tsx cloud/src/prices/cli.ts cancel <campaignId> [--url ...]
 */
import { parseArgs } from 'node:util';
import type { CampaignReport, Progress } from './service.ts';

export type { CampaignReport, Progress };

export interface FollowOptions {
  /** Where the bar goes (default stderr); a TTY gets one redrawn line, anything else a line per change. */
  out?: NodeJS.WritableStream & { isTTY?: boolean };
  pollMs?: number;
  /** Give up waiting after this long (the report still comes). */
  timeoutMs?: number;
  /** Stop when every tag is final, or at the campaign deadline (default). */
  untilDeadline?: boolean;
}

async function api<T>(base: string, path: string, method = 'GET', body?: unknown): Promise<T> {
  const r = await fetch(`${base}/api/v1${path}`, {
    method,
    ...(body !== undefined
      ? { body: JSON.stringify(body), headers: { 'content-type': 'application/json' } }
      : {}),
  });
  const json = (await r.json()) as T & { code?: string; message?: string };
  if (!r.ok) throw new Error(`${method} ${path}: ${r.status} ${json.code ?? ''} ${json.message ?? ''}`);
  return json;
}

export function progressBar(p: Progress, width = 30): string {
  const done = p.total - p.counts.sent - p.counts.pushed;
  const ok = Math.round((p.counts.confirmed / Math.max(1, p.total)) * width);
  const bad = Math.round(((done - p.counts.confirmed) / Math.max(1, p.total)) * width);
  const bar =
    '#'.repeat(ok) + 'x'.repeat(Math.min(width - ok, bad)) + '.'.repeat(Math.max(0, width - ok - bad));
  const pct = ((p.counts.confirmed / Math.max(1, p.total)) * 100).toFixed(1).padStart(5);
  return `[${bar}] ${pct}% confirmed ${p.counts.confirmed}/${p.total}  pushed ${p.counts.pushed}  sent ${p.counts.sent}  failed ${p.counts.failed}  superseded ${p.counts.superseded}  cancelled ${p.counts.cancelled}`;
}

/** Polls the campaign until every tag is final (or the timeout), drawing a bar; returns the report. */
export async function followCampaign(
  base: string,
  id: string,
  o: FollowOptions = {},
): Promise<CampaignReport> {
  const out = o.out ?? process.stderr;
  const deadline = Date.now() + (o.timeoutMs ?? 30 * 60_000);
  let last = '';
  for (;;) {
    const p = await api<Progress>(base, `/campaigns/${id}`);
    const line = progressBar(p);
    if (out.isTTY) out.write(`\r${line}`);
    else if (line !== last) out.write(`${line}\n`);
    last = line;
    if (p.complete || Date.now() >= deadline) break;
    await new Promise((r) => setTimeout(r, o.pollMs ?? 1000));
  }
  if (out.isTTY) out.write('\n');
  return api<CampaignReport>(base, `/campaigns/${id}/report`);
}

export function formatReport(r: CampaignReport): string {
  const lines = [`campaign ${r.id}: ${r.confirmed}/${r.total} confirmed`];
  for (const [reason, n] of Object.entries(r.byReason)) lines.push(`  ${reason}: ${n}`);
  for (const e of r.notConfirmed.slice(0, 50))
    lines.push(
      `  ${e.tag} ${e.sku} ${e.state} ${e.reason}${e.batteryMv !== null ? ` battery ${e.batteryMv} mV` : ''}`,
    );
  if (r.notConfirmed.length > 50)
    lines.push(`  … ${r.notConfirmed.length - 50} more (GET /api/v1/campaigns/${r.id}/report)`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: 'string', default: process.env.STORELINK_CLOUD_URL ?? 'http://127.0.0.1:8080' },
      site: { type: 'string' },
      skus: { type: 'string' },
      timeout: { type: 'string', default: '1800' },
      json: { type: 'boolean', default: false },
    },
  });
  const [cmd, id] = positionals;
  const base = values.url!;
  const print = (r: CampaignReport) =>
    process.stdout.write(`${values.json ? JSON.stringify(r) : formatReport(r)}\n`);
  switch (cmd) {
    case 'create': {
      if (!values.site) throw new Error('--site is required');
      const p = await api<Progress>(base, '/campaigns', 'POST', {
        site: values.site,
        ...(values.skus ? { skus: values.skus.split(',') } : {}),
      });
      process.stderr.write(`campaign ${p.id}: ${p.total} tags\n`);
      print(await followCampaign(base, p.id, { timeoutMs: Number(values.timeout) * 1000 }));
      return 0;
    }
    case 'follow':
      if (!id) throw new Error('campaign id missing');
      print(await followCampaign(base, id, { timeoutMs: Number(values.timeout) * 1000 }));
      return 0;
    case 'report':
      if (!id) throw new Error('campaign id missing');
      print(await api<CampaignReport>(base, `/campaigns/${id}/report`));
      return 0;
    case 'cancel':
      if (!id) throw new Error('campaign id missing');
      process.stderr.write(`${progressBar(await api<Progress>(base, `/campaigns/${id}/cancel`, 'POST'))}\n`);
      return 0;
    default:
      process.stderr.write(
        'usage: cli.ts follow|report|cancel <campaignId> | create --site S [--skus A,B] [--url U]\n',
      );
      return 2;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`${(e as Error).message}\n`);
      process.exit(1);
    },
  );
}
