import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, waitForPort } from './ports.ts';
import { Proc } from './proc.ts';
import { tempDir } from './tmp.ts';

export interface MosquittoOptions {
  /** Defaults to a free loopback port. */
  port?: number;
  /** username → password. */
  users: Record<string, string>;
  /**
   * ACL: users listed in `superusers` may read and write everything; every other user
   * is a gateway whose MQTT username is its gateway id, confined by `pattern` lines to
   * its own `sl/v1/+/{gw}/...` subtree. `extra` is appended verbatim.
   */
  acl?: { superusers?: string[]; extra?: string };
  /** Where config, password file, persistence and log live (a temp dir otherwise). */
  dir?: string;
}

export interface Mosquitto {
  port: number;
  url: string;
  dir: string;
  proc: Proc;
  /** SIGTERM (persistence is written on the way out) and wait. */
  stop(): Promise<void>;
  /** Start again on the same port with the same persistence. */
  start(): Promise<void>;
  /** SIGKILL: a broker crash (persistence only as of the last autosave). */
  kill(): Promise<void>;
  dispose(): Promise<void>;
}

/** The ACL a gateway gets on the cloud broker: publish its uplink channels, read its downlink ones. */
export function gatewayAclPatterns(): string {
  return [
    'pattern write sl/v1/+/%u/up',
    'pattern write sl/v1/+/%u/state',
    'pattern write sl/v1/+/%u/hb',
    'pattern write sl/v1/+/%u/shadow/reported',
    'pattern read sl/v1/+/%u/ack',
    'pattern read sl/v1/+/%u/cmd',
    'pattern read sl/v1/+/%u/state',
    'pattern read sl/v1/+/%u/shadow/desired',
  ].join('\n');
}

/**
 * Starts the Debian `mosquitto` binary as the cloud broker (issue 2: a broker nobody
 * here wrote): password file made with `mosquitto_passwd`, pattern ACL, persistence on
 * so retained acks and queued QoS1 messages survive a stop/start (outage tests).
 */
export async function startMosquitto(opts: MosquittoOptions): Promise<Mosquitto> {
  const port = opts.port ?? (await freePort());
  const dir = opts.dir ?? tempDir('storelink-mosq-');
  const dataDir = join(dir, 'data');
  mkdirSync(dataDir, { recursive: true });
  const passwd = join(dir, 'passwd');
  const entries = Object.entries(opts.users);
  entries.forEach(([user, pass], i) => {
    execFileSync(
      'mosquitto_passwd',
      i === 0 ? ['-b', '-c', passwd, user, pass] : ['-b', passwd, user, pass],
      {
        stdio: 'ignore',
      },
    );
  });
  const acl: string[] = [];
  for (const su of opts.acl?.superusers ?? []) acl.push(`user ${su}`, 'topic readwrite #', '');
  acl.push(gatewayAclPatterns());
  if (opts.acl?.extra) acl.push(opts.acl.extra);
  writeFileSync(join(dir, 'acl'), `${acl.join('\n')}\n`);
  const conf = [
    // We run as root; without this mosquitto drops to user "mosquitto", which cannot read our 0700 temp dir.
    'user root',
    `listener ${port} 127.0.0.1`,
    'allow_anonymous false',
    `password_file ${passwd}`,
    `acl_file ${join(dir, 'acl')}`,
    'persistence true',
    `persistence_location ${dataDir}/`,
    'autosave_interval 1',
    'max_queued_messages 100000',
    'max_inflight_messages 100',
    'log_dest stderr',
    'log_type error',
    'log_type warning',
    'log_type notice',
  ].join('\n');
  const confFile = join(dir, 'mosquitto.conf');
  writeFileSync(confFile, `${conf}\n`);
  const proc = new Proc({
    name: 'mosquitto',
    command: 'mosquitto',
    args: ['-c', confFile],
    logFile: join(dir, 'mosquitto.log'),
  });
  const start = async () => {
    await proc.start();
    await waitForPort(port);
  };
  await start();
  return {
    port,
    url: `mqtt://127.0.0.1:${port}`,
    dir,
    proc,
    start,
    stop: async () => {
      await proc.stop();
    },
    kill: async () => {
      await proc.kill('SIGKILL');
    },
    dispose: () => proc.dispose(),
  };
}
