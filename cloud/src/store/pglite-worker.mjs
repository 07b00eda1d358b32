// PGlite in a worker thread (see pglite.ts `openPgliteInWorker`): Postgres-in-WASM is
// the most CPU-hungry part of the ingest, so it gets a core of its own while the main
// thread parses MQTT, JSON and schemas. Plain JavaScript so it loads without a TS loader.
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite, types } from '@electric-sql/pglite';

const db = await PGlite.create({
  ...(workerData.dir ? { dataDir: workerData.dir } : {}),
  parsers: { [types.INT8]: (v) => Number(v) },
}).catch((e) => {
  parentPort.postMessage({ id: 0, error: { message: e.message } });
  return undefined;
});
if (db) parentPort.postMessage({ id: 0, ok: true });

parentPort.on('message', async (m) => {
  try {
    if (m.op === 'query') {
      const r = await db.query(m.text, m.params);
      parentPort.postMessage({ id: m.id, rows: r.rows, affected: r.affectedRows ?? 0 });
    } else if (m.op === 'exec') {
      await db.exec(m.text);
      parentPort.postMessage({ id: m.id });
    } else if (m.op === 'close') {
      await db.close();
      parentPort.postMessage({ id: m.id });
      parentPort.close();
    }
  } catch (e) {
    parentPort.postMessage({ id: m.id, error: { message: e.message, code: e.code } });
  }
});
