import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Type } from '@sinclair/typebox';
import type { FastifyInstance } from 'fastify';
import { ALERT_KINDS } from '../fleet/alerts-rules.ts';
import type { PriceBook } from '../prices/service.ts';
import type { SqlQueryable } from '../store/sql.ts';

/**
 * The operations dashboard (docs/fleet-alerts-dashboard.md): three static files served by
 * the cloud itself (no build step, no CDN [DASH-LOCAL-1]) and two small read routes the
 * public API lacks (alert kinds, recent price campaigns). Everything else the page reads
 * from /api/v1 like any client.
 */
const PUBLIC = join(import.meta.dirname, 'public');
const FILES: Record<string, { file: string; type: string }> = {
  '/dashboard': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/': { file: 'index.html', type: 'text/html; charset=utf-8' },
  '/dashboard/app.js': { file: 'app.js', type: 'text/javascript; charset=utf-8' },
  '/dashboard/style.css': { file: 'style.css', type: 'text/css; charset=utf-8' },
};

export interface DashboardOptions {
  /** Price book and its SQL (campaign list); omit when prices are not enabled. */
  prices?: { book: PriceBook; sql: SqlQueryable };
}

export default async function dashboardRoutes(app: FastifyInstance, opts: DashboardOptions) {
  // Read once at start: a missing file fails the start, not the first visitor.
  const bodies = new Map(
    Object.entries(FILES).map(([route, f]) => [route, readFileSync(join(PUBLIC, f.file), 'utf8')]),
  );
  for (const [route, f] of Object.entries(FILES)) {
    app.get(route, { schema: { hide: true } }, async (_req, reply) =>
      reply
        .header('content-type', f.type)
        .header('cache-control', 'no-cache')
        // The page loads only its own files [DASH-LOCAL-1].
        .header('content-security-policy', "default-src 'self'")
        .send(bodies.get(route)),
    );
  }

  app.get(
    '/dashboard/data/kinds',
    { schema: { tags: ['dashboard'], summary: 'Alert kinds', response: { 200: Type.Array(Type.String()) } } },
    async () => [...ALERT_KINDS],
  );

  const prices = opts.prices;
  if (prices) {
    app.get(
      '/dashboard/data/campaigns',
      {
        schema: {
          tags: ['dashboard'],
          summary: 'The 20 newest price campaigns with their per-tag progress',
        },
      },
      async () => {
        const r = await prices.sql.query<{ id: string }>(
          'SELECT id FROM price_campaigns ORDER BY created_at DESC, id DESC LIMIT 20',
        );
        return { items: await Promise.all(r.rows.map((row) => prices.book.progress(row.id))) };
      },
    );
  }
}
