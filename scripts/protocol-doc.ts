/**
 * Renders every registered event type and command type (the registries in
 * protocols/src/events.ts and commands.ts, filled at import by each capability's module)
 * into docs/protocol.md between `<!-- EVENT_TYPES -->` / `<!-- COMMAND_TYPES -->` markers.
 * `npm run docs:protocol` writes the file; test/docs/protocol-doc.test.ts fails when the
 * committed page and the registries disagree, so a new type cannot go undocumented.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { commandTypes, eventTypes } from '../protocols/src/index.ts';

export const PROTOCOL_DOC = fileURLToPath(new URL('../docs/protocol.md', import.meta.url));

const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const byName = <T>(m: ReadonlyMap<string, T>) => [...m.entries()].sort(([a], [b]) => a.localeCompare(b));

function eventTable(): string {
  const rows = byName(eventTypes()).map(
    ([type, s]) => `| \`${type}\` | \`${s.lane}\` | ${s.source} | ${cell(s.description)} |`,
  );
  return ['| type | lane | published by | meaning |', '| --- | --- | --- | --- |', ...rows].join('\n');
}

function commandTable(): string {
  const rows = byName(commandTypes()).map(
    ([type, s]) => `| \`${type}\` | ${s.executor} | ${cell(s.description)} |`,
  );
  return ['| type | executed by | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

export function renderProtocolDoc(current: string): string {
  let out = current;
  for (const [name, render] of [
    ['EVENT_TYPES', eventTable],
    ['COMMAND_TYPES', commandTable],
  ] as const) {
    const re = new RegExp(`<!-- ${name} -->[\\s\\S]*?<!-- /${name} -->`);
    if (!re.test(out))
      throw new Error(`docs/protocol.md lacks the <!-- ${name} --> ... <!-- /${name} --> markers`);
    out = out.replace(re, `<!-- ${name} -->\n${render()}\n<!-- /${name} -->`);
  }
  return out;
}

/** Table rows compared without their padding: Biome's markdown formatter aligns the columns. */
export function normalizeTables(doc: string): string {
  return doc
    .split('\n')
    .map((line) => (line.startsWith('|') ? line.replace(/-{3,}/g, '---').replace(/\s+/g, ' ') : line))
    .join('\n');
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(PROTOCOL_DOC, renderProtocolDoc(readFileSync(PROTOCOL_DOC, 'utf8')));
  execFileSync(
    fileURLToPath(new URL('../node_modules/.bin/biome', import.meta.url)),
    ['format', '--write', PROTOCOL_DOC],
    {
      stdio: 'ignore',
    },
  );
  console.log(`wrote ${PROTOCOL_DOC}`);
}
