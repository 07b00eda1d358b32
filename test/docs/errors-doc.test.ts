import { readFileSync } from 'node:fs';
import { expect, it } from 'vitest';
import { ERRORS_DOC, renderErrorsDoc } from '../../scripts/errors-doc.ts';

it('docs/errors.md lists exactly the codes of the catalogues (run `npm run docs:errors` to refresh)', () => {
  const doc = readFileSync(ERRORS_DOC, 'utf8');
  expect(doc).toBe(renderErrorsDoc(doc));
});
