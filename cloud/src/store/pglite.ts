import { mkdirSync } from 'node:fs';
import { PGlite, types } from '@electric-sql/pglite';
import type { QueryResult, Sql, SqlQueryable } from './sql.ts';

/**
 * PGlite driver: Postgres compiled to WASM, in process, one connection. Because there is
 * only one connection, every statement and every transaction goes through ONE queue:
 * a statement issued while a transaction is open would otherwise run inside it.
 */
export async function openPglite(dir?: string): Promise<Sql> {
  if (dir) mkdirSync(dir, { recursive: true });
  const db = await PGlite.create({
    ...(dir ? { dataDir: dir } : {}),
    // [SQL-VALUES-1] int8 as a JS number, as the pg driver does (see sql.ts).
    parsers: { [types.INT8]: (v: string) => Number(v) },
  });
  let tail: Promise<unknown> = Promise.resolve();
  const enqueue = <T>(job: () => Promise<T>): Promise<T> => {
    const run = tail.then(job, job);
    // The queue must survive a failed job; the caller still sees the rejection.
    tail = run.catch(() => undefined);
    return run;
  };
  const wrap = (q: { query: PGlite['query']; exec: PGlite['exec'] }): SqlQueryable => ({
    async query<R>(text: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const r = await q.query<R>(text, params as unknown[]);
      return { rows: r.rows, affected: r.affectedRows ?? 0 };
    },
    async exec(script: string) {
      await q.exec(script);
    },
  });
  const direct = wrap(db);
  let closed = false;
  return {
    dialect: 'pglite',
    query: (text, params) => enqueue(() => direct.query(text, params)),
    exec: (script) => enqueue(() => direct.exec(script)),
    transaction: (fn) => enqueue(() => db.transaction((tx) => fn(wrap(tx)))),
    async close() {
      if (closed) return;
      closed = true;
      await enqueue(() => db.close());
    },
  } satisfies Sql as Sql;
}
