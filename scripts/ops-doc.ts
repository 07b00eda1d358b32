/**
 * Renders the configuration environment variables and the Prometheus metric names of
 * edge and cloud into docs/operations.md between `<!-- X -->` / `<!-- /X -->` markers,
 * from the code itself. `npm run docs:ops` writes the file; test/docs/ops-doc.test.ts
 * fails when the committed page and the code disagree.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createCabinetMetrics } from '../cloud/src/cabinet/service.ts';
import { createCloudMetrics, ENV_MAP } from '../cloud/src/index.ts';
import { createMembersMetrics } from '../cloud/src/members/service.ts';
import { createOrdersMetrics } from '../cloud/src/orders/service.ts';
import { envVariables } from '../edge/src/config.ts';
import { EdgeMetrics } from '../edge/src/metrics.ts';
import { registerCabinetMetrics } from '../edge/src/cabinet/agent-wiring.ts';
import { registerRfidMetrics } from '../edge/src/rfid/agent-wiring.ts';
import { registerVmcMetrics } from '../edge/src/vending/agent-wiring.ts';
import { visionMetrics } from '../edge/src/vision/service.ts';

export const OPS_DOC = fileURLToPath(new URL('../docs/operations.md', import.meta.url));

async function metricRows(registry: {
  getMetricsAsJSON(): Promise<Array<{ name: string; type: unknown; help: string }>>;
}): Promise<string> {
  const metrics = await registry.getMetricsAsJSON();
  return metrics
    .filter((m) => !/_process_|^storelink_cloud_(process|nodejs)_|_nodejs_/.test(m.name))
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((m) => `| \`${m.name}\` | ${String(m.type)} | ${m.help.replace(/\|/g, '\\|')} |`)
    .join('\n');
}

/** The agent's registry, with the metrics it adds when vending is configured. */
function edgeRegistry() {
  const { registry } = new EdgeMetrics({ outbox: () => undefined, devicesOnline: () => 0 });
  registerVmcMetrics(registry);
  registerRfidMetrics(registry);
  registerCabinetMetrics(registry);
  visionMetrics(registry);
  return registry;
}

/** The cloud's registry with every service's metrics on it, as `startCloud` builds it. */
function cloudRegistry() {
  const { registry } = createCloudMetrics({ defaultMetrics: false });
  createOrdersMetrics(registry);
  createMembersMetrics(registry);
  createCabinetMetrics(registry);
  return registry;
}

export async function renderOpsDoc(current: string): Promise<string> {
  const edgeEnv = envVariables()
    .map((v) => `| \`${v.name}\` | \`${v.path.join('.')}\` |`)
    .join('\n');
  const cloudEnv = Object.entries(ENV_MAP as Record<string, { path: string; type: string }>)
    .map(([name, v]) => `| \`${name}\` | \`${v.path}\` |`)
    .join('\n');
  const sections: Record<string, string> = {
    EDGE_ENV: edgeEnv,
    CLOUD_ENV: cloudEnv,
    EDGE_METRICS: await metricRows(edgeRegistry()),
    CLOUD_METRICS: await metricRows(cloudRegistry()),
  };
  let out = current;
  for (const [name, body] of Object.entries(sections)) {
    const re = new RegExp(`<!-- ${name} -->[\\s\\S]*?<!-- /${name} -->`);
    if (!re.test(out))
      throw new Error(`docs/operations.md lacks the <!-- ${name} --> ... <!-- /${name} --> markers`);
    out = out.replace(re, `<!-- ${name} -->\n${body}\n<!-- /${name} -->`);
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(OPS_DOC, await renderOpsDoc(readFileSync(OPS_DOC, 'utf8')));
  console.log(`wrote ${OPS_DOC}`);
}
