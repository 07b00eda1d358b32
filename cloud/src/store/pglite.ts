import { mkdirSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
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

/**
 * The same driver with PGlite in a worker thread: the WASM database runs on its own core
 * while this thread handles MQTT, JSON and validation. Same single queue, same value
 * conventions; a transaction is BEGIN … COMMIT/ROLLBACK sent through the queue, so
 * nothing can interleave with it.
 */
export async function openPgliteInWorker(dir?: string): Promise<Sql> {
  if (dir) mkdirSync(dir, { recursive: true });
  const worker = new Worker(new URL('./pglite-worker.mjs', import.meta.url), { workerData: { dir } });
  let nextId = 1;
  const waiting = new Map<number, { resolve: (v: WorkerReply) => void; reject: (e: Error) => void }>();
  type WorkerReply = {
    id: number;
    rows?: unknown[];
    affected?: number;
    ok?: boolean;
    error?: { message: string; code?: string };
  };
  let dead: Error | undefined;
  const ready = new Promise<void>((resolve, reject) => {
    waiting.set(0, { resolve: (r) => (r.error ? reject(new Error(r.error.message)) : resolve()), reject });
  });
  worker.on('message', (r: WorkerReply) => {
    const w = waiting.get(r.id);
    if (!w) return;
    waiting.delete(r.id);
    if (r.error)
      w.reject(Object.assign(new Error(r.error.message), r.error.code ? { code: r.error.code } : {}));
    else w.resolve(r);
  });
  const fail = (e: Error) => {
    dead = e;
    for (const w of waiting.values()) w.reject(e);
    waiting.clear();
  };
  worker.on('error', fail);
  worker.on('exit', (code) => fail(new Error(`PGlite worker exited (${code})`)));
  await ready;
  const call = (msg: { op: 'query' | 'exec' | 'close'; text?: string; params?: readonly unknown[] }) =>
    new Promise<WorkerReply>((resolve, reject) => {
      if (dead) return reject(dead);
      const id = nextId++;
      waiting.set(id, { resolve, reject });
      worker.postMessage({ id, ...msg });
    });
  let tail: Promise<unknown> = Promise.resolve();
  const enqueue = <T>(job: () => Promise<T>): Promise<T> => {
    const run = tail.then(job, job);
    tail = run.catch(() => undefined);
    return run;
  };
  const direct: SqlQueryable = {
    async query<R>(text: string, params: readonly unknown[] = []): Promise<QueryResult<R>> {
      const r = await call({ op: 'query', text, params });
      return { rows: (r.rows ?? []) as R[], affected: r.affected ?? 0 };
    },
    async exec(script: string) {
      await call({ op: 'exec', text: script });
    },
  };
  let closed = false;
  return {
    dialect: 'pglite',
    query: (text, params) => enqueue(() => direct.query(text, params)),
    exec: (script) => enqueue(() => direct.exec(script)),
    transaction: (fn) =>
      enqueue(async () => {
        await direct.exec('BEGIN');
        try {
          const out = await fn(direct);
          await direct.exec('COMMIT');
          return out;
        } catch (e) {
          await direct.exec('ROLLBACK').catch(() => undefined);
          throw e;
        }
      }),
    async close() {
      if (closed) return;
      closed = true;
      await enqueue(async () => {
        await call({ op: 'close' }).catch(() => undefined);
        await worker.terminate();
      });
    },
  } satisfies Sql as Sql;
}
