import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { OPS_DOC, renderOpsDoc } from '../../scripts/ops-doc.ts';

it('docs/operations.md lists the environment variables and metrics the code has (run `npm run docs:ops`)', async () => {
  const doc = readFileSync(OPS_DOC, 'utf8');
  expect(doc).toBe(await renderOpsDoc(doc));
});
