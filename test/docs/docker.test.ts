/**
 * docker/ stays usable without Docker here (docs/fleet-alerts-dashboard.md "docker/"):
 * - every Dockerfile passes the offline linter (dockerfilelint) with no finding;
 * - the compose file and the Prometheus/Grafana provisioning parse (a small YAML reader for
 *   the block subset these files use) and hang together: services, depends_on, mounted
 *   files, named volumes, the cloud's STORELINK_CLOUD_* variables (each must exist in the
 *   cloud's ENV_MAP) and its scrape target;
 * - the Grafana dashboard is valid JSON and every metric its panels query exists in the
 *   cloud's or the edge's metric registry.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ENV_MAP } from '../../cloud/src/config.ts';
import { createCloudMetrics } from '../../cloud/src/metrics.ts';
import { EdgeMetrics } from '../../edge/src/metrics.ts';

const ROOT = resolve(import.meta.dirname, '../..');
const DOCKER = join(ROOT, 'docker');

type Yaml = string | null | Yaml[] | { [k: string]: Yaml };
type YamlMap = { [k: string]: Yaml };

/** Reads the block-style YAML subset used in docker/ (maps, lists, scalars, inline JSON arrays). */
function parseYaml(text: string): Yaml {
  const lines: { indent: number; text: string; no: number }[] = [];
  text.split('\n').forEach((raw, no) => {
    if (raw.includes('\t')) throw new Error(`line ${no + 1}: tab in indentation`);
    const stripped = stripComment(raw).trimEnd();
    if (stripped.trim() === '') return;
    lines.push({ indent: stripped.length - stripped.trimStart().length, text: stripped.trim(), no: no + 1 });
  });
  let i = 0;
  const scalar = (s: string): Yaml => {
    if (s.startsWith('[')) return JSON.parse(s) as Yaml;
    if (/^".*"$/.test(s) || /^'.*'$/.test(s)) return s.slice(1, -1);
    return s;
  };
  const block = (indent: number): Yaml =>
    lines[i]!.text.startsWith('- ') || lines[i]!.text === '-' ? list(indent) : map(indent);
  function list(indent: number): Yaml[] {
    const out: Yaml[] = [];
    while (i < lines.length && lines[i]!.indent === indent && lines[i]!.text.startsWith('-')) {
      const item = lines[i]!.text.slice(1).trim();
      if (item === '') {
        i++;
        out.push(block(lines[i]!.indent));
      } else if (/^[A-Za-z0-9_."-]+:(\s|$)/.test(item) && !item.startsWith('"')) {
        // "- key: value" starts a map whose keys sit two columns in.
        lines[i] = { ...lines[i]!, indent: indent + 2, text: item };
        out.push(map(indent + 2));
      } else {
        i++;
        out.push(scalar(item));
      }
    }
    return out;
  }
  function map(indent: number): YamlMap {
    const out: YamlMap = {};
    while (i < lines.length && lines[i]!.indent === indent && !lines[i]!.text.startsWith('- ')) {
      const { text: t, no } = lines[i]!;
      const m = /^("[^"]+"|[^:\s][^:]*):(?:\s+(.*))?$/.exec(t);
      if (!m) throw new Error(`line ${no}: expected "key: value", got ${JSON.stringify(t)}`);
      const key = m[1]!.replace(/^"|"$/g, '');
      if (key in out) throw new Error(`line ${no}: duplicate key ${key}`);
      i++;
      if (m[2] !== undefined && m[2] !== '') out[key] = scalar(m[2]);
      else if (i < lines.length && lines[i]!.indent > indent) out[key] = block(lines[i]!.indent);
      else out[key] = null;
    }
    if (i < lines.length && lines[i]!.indent > indent)
      throw new Error(`line ${lines[i]!.no}: unexpected indentation`);
    return out;
  }
  const doc = block(0);
  if (i !== lines.length) throw new Error(`line ${lines[i]!.no}: unexpected content`);
  return doc;
}

function stripComment(line: string): string {
  let q: string | null = null;
  for (let k = 0; k < line.length; k++) {
    const c = line[k]!;
    if (q) {
      if (c === q) q = null;
    } else if (c === '"' || c === "'") q = c;
    else if (c === '#' && (k === 0 || /\s/.test(line[k - 1]!))) return line.slice(0, k);
  }
  return line;
}

const asMap = (v: Yaml | undefined, what: string): YamlMap => {
  if (!v || typeof v !== 'object' || Array.isArray(v)) throw new Error(`${what} is not a map`);
  return v;
};
const readYaml = (rel: string) => parseYaml(readFileSync(join(DOCKER, rel), 'utf8'));

describe('docker/', () => {
  it('every Dockerfile passes dockerfilelint with no finding', () => {
    const files = readdirSync(DOCKER).filter((f) => f.startsWith('Dockerfile'));
    expect(files.sort()).toEqual(['Dockerfile.cloud', 'Dockerfile.edge']);
    for (const f of files) {
      let out: string;
      try {
        out = execFileSync(join(ROOT, 'node_modules/.bin/dockerfilelint'), ['-j', join(DOCKER, f)], {
          encoding: 'utf8',
        });
      } catch (e) {
        out = (e as { stdout?: string }).stdout ?? '';
      }
      const report = JSON.parse(out) as { files: Array<{ issues_count: number; issues: unknown[] }> };
      expect(report.files[0]!.issues, f).toEqual([]);
    }
  });

  it('Dockerfiles: non-root user, health check, multi-arch edge with native addons built in the image', () => {
    for (const f of ['Dockerfile.cloud', 'Dockerfile.edge']) {
      const text = readFileSync(join(DOCKER, f), 'utf8');
      expect(text, f).toMatch(/^USER node$/m);
      expect(text, f).toMatch(/^HEALTHCHECK /m);
      expect(text, f).toMatch(/^FROM node:20-bookworm-slim AS deps$/m);
    }
    const edge = readFileSync(join(DOCKER, 'Dockerfile.edge'), 'utf8');
    expect(edge).toContain('--platform linux/amd64,linux/arm64');
    expect(edge).toMatch(/npm rebuild --build-from-source classic-level @serialport\/bindings-cpp/);
  });

  it('compose: the production-like stack hangs together', () => {
    const doc = asMap(readYaml('compose.yml'), 'compose.yml');
    const services = asMap(doc.services, 'services');
    expect(Object.keys(services).sort()).toEqual(['cloud', 'emqx', 'grafana', 'postgres', 'prometheus']);
    const volumes = asMap(doc.volumes, 'volumes');
    for (const [name, raw] of Object.entries(services)) {
      const s = asMap(raw, name);
      expect(s.image ?? s.build, `${name} has an image or a build`).toBeTruthy();
      // depends_on: a list of names, or a map of name → condition.
      const deps = Array.isArray(s.depends_on)
        ? (s.depends_on as string[])
        : Object.keys(s.depends_on ? asMap(s.depends_on, `${name}.depends_on`) : {});
      for (const d of deps) expect(services, `${name} depends on ${d}`).toHaveProperty(d);
      for (const v of (s.volumes as string[] | undefined) ?? []) {
        const [src] = v.split(':');
        if (src!.startsWith('./')) expect(existsSync(join(DOCKER, src!)), `${name} mounts ${src}`).toBe(true);
        else expect(volumes, `${name} uses volume ${src}`).toHaveProperty(src!);
      }
    }
    const cloud = asMap(services.cloud, 'cloud');
    const build = asMap(cloud.build, 'cloud.build');
    expect(existsSync(resolve(DOCKER, build.context as string, build.dockerfile as string))).toBe(true);
    const env = asMap(cloud.environment, 'cloud.environment');
    for (const k of Object.keys(env)) expect(ENV_MAP, `${k} is a cloud variable`).toHaveProperty(k);
    expect(env.STORELINK_CLOUD_BROKER_URL).toBe('mqtt://emqx:1883');
    expect(env.STORELINK_CLOUD_STORE_URL).toMatch(/^postgres:\/\/.+@postgres:5432\//);
    expect(env.STORELINK_CLOUD_HTTP_PORT).toBe('8080');
    const emqxEnv = asMap(asMap(services.emqx, 'emqx').environment, 'emqx.environment');
    expect(emqxEnv.EMQX_AUTHORIZATION__NO_MATCH).toBe('deny');
  });

  it('Prometheus scrapes the cloud service at its HTTP port; Grafana provisions that Prometheus', () => {
    const prom = asMap(readYaml('prometheus/prometheus.yml'), 'prometheus.yml');
    const jobs = prom.scrape_configs as YamlMap[];
    const cloudJob = jobs.find((j) => j.job_name === 'storelink-cloud')!;
    const targets =
      (asMap((cloudJob.static_configs as YamlMap[])[0], 'static_configs').targets as string[]) ?? [];
    expect(targets).toEqual(['cloud:8080']);
    expect(jobs.map((j) => j.job_name)).toContain('storelink-edge');
    JSON.parse(readFileSync(join(DOCKER, 'prometheus/edges.json'), 'utf8'));
    const ds = asMap(readYaml('grafana/provisioning/datasources/prometheus.yml'), 'datasources');
    const src = (ds.datasources as YamlMap[])[0]!;
    expect(src).toMatchObject({
      type: 'prometheus',
      url: 'http://prometheus:9090',
      uid: 'storelink-prometheus',
    });
    const dashProv = asMap(readYaml('grafana/provisioning/dashboards/storelink.yml'), 'dashboards');
    expect((dashProv.providers as YamlMap[])[0]).toMatchObject({ type: 'file' });
  });

  it('Grafana dashboard: valid JSON, every queried metric exists in a registry', async () => {
    const dash = JSON.parse(readFileSync(join(DOCKER, 'grafana/dashboards/storelink.json'), 'utf8')) as {
      uid: string;
      panels: Array<{
        type: string;
        title: string;
        datasource?: { uid: string };
        targets?: Array<{ expr: string }>;
      }>;
    };
    const known = new Set<string>();
    for (const m of await createCloudMetrics({ defaultMetrics: true }).registry.getMetricsAsJSON())
      known.add(m.name);
    const edge = new EdgeMetrics({ outbox: () => undefined, devicesOnline: () => 0 });
    for (const m of await edge.registry.getMetricsAsJSON()) known.add(m.name);
    const queried = new Set<string>();
    const panels = dash.panels.filter((p) => p.type !== 'row');
    expect(panels.length).toBeGreaterThan(10);
    for (const p of panels) {
      expect(p.datasource?.uid, p.title).toBe('storelink-prometheus');
      expect(p.targets?.length, p.title).toBeGreaterThan(0);
      for (const t of p.targets!) {
        const names = t.expr.match(/storelink_[a-z0-9_]+/g) ?? [];
        expect(names.length, `${p.title}: ${t.expr}`).toBeGreaterThan(0);
        for (const n of names) queried.add(n.replace(/_(bucket|sum|count)$/, ''));
      }
    }
    const unknown = [...queried].filter((n) => !known.has(n));
    expect(unknown).toEqual([]);
    // The alert metrics are on the board.
    expect([...queried]).toEqual(
      expect.arrayContaining(['storelink_cloud_alerts_active', 'storelink_cloud_webhook_deliveries_total']),
    );
  });

  it('the YAML reader refuses what it does not understand', () => {
    expect(() => parseYaml('a: 1\n   b: 2\n')).toThrow(/indentation/);
    expect(() => parseYaml('a: 1\na: 2\n')).toThrow(/duplicate key a/);
    expect(() => parseYaml('a:\n\tb: 1\n')).toThrow(/tab/);
    expect(parseYaml('a:\n  - x: 1\n    y: "2 # not a comment"\n  - z # comment\n')).toEqual({
      a: [{ x: '1', y: '2 # not a comment' }, 'z'],
    });
  });
});
