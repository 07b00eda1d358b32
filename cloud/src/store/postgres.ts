import pg from 'pg';
import type { QueryResult, Sql, SqlQueryable } from './sql.ts';

const INT8_OID = 20;

/**
 * node-postgres driver over a Pool. Statements outside a transaction take any pooled
 * connection; a transaction holds one connection from BEGIN to COMMIT/ROLLBACK.
 */
export async function openPostgres(url: string, opts: { max?: number } = {}): Promise<Sql> {
  const pool = new pg.Pool({
    connectionString: url,
    max: opts.max ?? 10,
    types: {
      // [SQL-VALUES-1] int8 as a JS number, as PGlite does (see sql.ts).
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8_OID ? (v: string) => Number(v) : pg.types.getTypeParser(oid, format as 'text')) as never,
    },
  });
  // An idle client losing its server must not crash the process; the next query reports it.
  pool.on('error', () => undefined);
  // Fail fast on a wrong URL instead of at the first request.
  const probe = await pool.connect();
  probe.release();

  const wrap = (c: pg.Pool | pg.PoolClient): SqlQueryable => ({
    async query<R>(text: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const r = await c.query(text, params as unknown[]);
      return { rows: r.rows as R[], affected: r.rowCount ?? 0 };
    },
    async exec(script: string) {
      // No parameters: node-postgres uses the simple query protocol, which runs several statements.
      await c.query(script);
    },
  });
  const direct = wrap(pool);
  return {
    dialect: 'postgres',
    query: direct.query,
    exec: direct.exec,
    async transaction(fn) {
      const client = await pool.connect();
      let broken = false;
      try {
        await client.query('BEGIN');
        const out = await fn(wrap(client));
        await client.query('COMMIT');
        return out;
      } catch (e) {
        try {
          await client.query('ROLLBACK');
        } catch {
          broken = true;
        }
        throw e;
      } finally {
        // A connection that could not even roll back is destroyed, not reused.
        client.release(broken);
      }
    },
    async close() {
      await pool.end();
    },
  } satisfies Sql as Sql;
}
