import { execFileSync } from 'node:child_process';
import { chownSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { freePort } from './ports.ts';
import { tempDir } from './tmp.ts';

const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';

export interface Postgres {
  url: string;
  port: number;
  dir: string;
  /** Creates a fresh database and returns its URL (one per conformance test, so they do not share rows). */
  createDatabase(name: string): string;
  stop(): Promise<void>;
}

export function postgresAvailable(): boolean {
  return existsSync(join(PG_BIN, 'initdb')) && existsSync(join(PG_BIN, 'pg_ctl'));
}

/** Runs a PostgreSQL binary as the `postgres` OS user when we are root (postgres refuses to run as root). */
function asPostgres(bin: string, args: string[]): string {
  const full = join(PG_BIN, bin);
  if (process.getuid?.() === 0) {
    return execFileSync('runuser', ['-u', 'postgres', '--', full, ...args], {
      encoding: 'utf8',
      stdio: 'pipe',
    });
  }
  return execFileSync(full, args, { encoding: 'utf8', stdio: 'pipe' });
}

/**
 * A throwaway PostgreSQL 15 cluster on a free loopback port: initdb into a temp dir
 * owned by `postgres`, trust auth on 127.0.0.1, fsync off (it is a test cluster).
 */
export async function startPostgres(): Promise<Postgres> {
  const port = await freePort();
  const dir = tempDir('storelink-pg-');
  const data = join(dir, 'data');
  const sock = join(dir, 'sock');
  mkdirSync(sock);
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim());
    chownSync(dir, uid, gid);
    chownSync(sock, uid, gid);
  }
  asPostgres('initdb', ['-D', data, '-U', 'postgres', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  asPostgres('pg_ctl', [
    '-D',
    data,
    '-l',
    join(dir, 'pg.log'),
    '-w',
    '-o',
    `-p ${port} -k ${sock} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off`,
    'start',
  ]);
  const base = `postgres://postgres@127.0.0.1:${port}`;
  return {
    port,
    dir,
    url: `${base}/postgres`,
    createDatabase(name: string) {
      asPostgres('psql', [
        '-h',
        '127.0.0.1',
        '-p',
        String(port),
        '-U',
        'postgres',
        '-c',
        `CREATE DATABASE "${name}"`,
      ]);
      return `${base}/${name}`;
    },
    async stop() {
      try {
        asPostgres('pg_ctl', ['-D', data, '-m', 'immediate', '-w', 'stop']);
      } catch {
        // already gone
      }
    },
  };
}
