import { parseArgs, type ParseArgsConfig } from 'node:util';

/**
 * Shared plumbing of `bench/run.ts` and `bench/torture.ts`: each scenario declares its
 * options (node:util parseArgs), logs to stderr, and returns one result object that the
 * dispatcher prints as exactly one JSON line on stdout (the last line), so
 * `npm run torture -- crash --json | tail -1 | jq` always works.
 */
export type Options = NonNullable<ParseArgsConfig['options']>;

export interface Scenario<R extends object = Record<string, unknown>> {
  name: string;
  description: string;
  options: Options;
  /** Fields that must be zero; a non-zero one makes the process exit 1. */
  mustBeZero?: string[];
  run(args: Record<string, string | boolean | undefined>): Promise<R>;
}

export const log = (...parts: unknown[]) => {
  process.stderr.write(
    `[${new Date().toISOString().slice(11, 23)}] ${parts.map((p) => (typeof p === 'string' ? p : JSON.stringify(p))).join(' ')}\n`,
  );
};

export function num(v: string | boolean | undefined, def: number): number {
  if (v === undefined || typeof v === 'boolean') return def;
  const n = Number(v);
  if (!Number.isFinite(n)) throw new Error(`not a number: ${v}`);
  return n;
}

export function str<T extends string>(v: string | boolean | undefined, def: T): T {
  return (typeof v === 'string' ? v : def) as T;
}

/** Small seeded PRNG (mulberry32) so a torture run can be replayed with --seed. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export async function dispatch(
  kind: string,
  scenarios: Array<Scenario<object>>,
  argv = process.argv.slice(2),
): Promise<void> {
  const name = argv[0];
  const scenario = scenarios.find((s) => s.name === name);
  if (!scenario) {
    process.stderr.write(
      `usage: npm run ${kind} -- NAME [--json] [options]\n\n${scenarios.map((s) => `  ${s.name.padEnd(12)} ${s.description}`).join('\n')}\n`,
    );
    process.exit(name === undefined || name === '--help' ? 0 : 2);
  }
  const { values } = parseArgs({
    args: argv.slice(1),
    options: {
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
      ...scenario.options,
    },
    strict: true,
  });
  if (values.help) {
    const opts = Object.entries(scenario.options)
      .map(
        ([k, o]) =>
          `  --${k}${o.type === 'string' ? ' VALUE' : ''}${o.default !== undefined ? ` (default ${String(o.default)})` : ''}`,
      )
      .join('\n');
    process.stderr.write(`${kind} ${scenario.name}: ${scenario.description}\n${opts}\n`);
    process.exit(0);
  }
  let result: object;
  try {
    result = await scenario.run(values as Record<string, string | boolean | undefined>);
  } catch (e) {
    log(`${scenario.name} failed:`, (e as Error).stack ?? String(e));
    process.stdout.write(`${JSON.stringify({ scenario: scenario.name, error: (e as Error).message })}\n`);
    process.exit(1);
  }
  const bad = (scenario.mustBeZero ?? []).filter((k) => (result as Record<string, unknown>)[k] !== 0);
  if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`);
  else process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (bad.length) {
    log(
      `FAIL: ${bad.map((k) => `${k}=${String((result as Record<string, unknown>)[k])}`).join(', ')} (must be 0)`,
    );
    process.exit(1);
  }
  process.exit(0);
}
