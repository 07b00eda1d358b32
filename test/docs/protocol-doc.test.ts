import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { normalizeTables, PROTOCOL_DOC, renderProtocolDoc } from '../../scripts/protocol-doc.ts';

it('docs/protocol.md lists exactly the registered event and command types (run `npm run docs:protocol` to refresh)', () => {
  const doc = readFileSync(PROTOCOL_DOC, 'utf8');
  expect(normalizeTables(doc)).toBe(normalizeTables(renderProtocolDoc(doc)));
});
