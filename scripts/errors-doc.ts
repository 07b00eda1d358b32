/**
 * Renders the error catalogues into docs/errors.md between `<!-- X -->` and `<!-- /X -->`
 * markers. `npm run docs:errors` writes the file; test/docs/errors-doc.test.ts fails when
 * the committed page and the catalogues disagree.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { CLOUD_ERRORS } from '../cloud/src/errors.ts';
import { EDGE_ERRORS } from '../edge/src/errors.ts';
import { type Catalogue, PROTO_ERRORS } from '../protocols/src/errors.ts';

export const ERRORS_DOC = fileURLToPath(new URL('../docs/errors.md', import.meta.url));

const SECTIONS: Record<string, Catalogue> = { PROTO: PROTO_ERRORS, EDGE: EDGE_ERRORS, CLOUD: CLOUD_ERRORS };

function escapeCell(text: string): string {
  return text.replace(/\|/g, '\\|');
}

function table(catalogue: Catalogue): string {
  return Object.entries(catalogue)
    .map(
      ([code, spec]) =>
        `| \`${code}\` | ${spec.status ?? 400} | ${escapeCell(spec.message)} | ${escapeCell(spec.fix)} |`,
    )
    .join('\n');
}

export function renderErrorsDoc(current: string): string {
  let out = current;
  for (const [name, catalogue] of Object.entries(SECTIONS)) {
    const re = new RegExp(`<!-- ${name} -->[\\s\\S]*?<!-- /${name} -->`);
    if (!re.test(out))
      throw new Error(`docs/errors.md lacks the <!-- ${name} --> ... <!-- /${name} --> markers`);
    out = out.replace(re, `<!-- ${name} -->\n${table(catalogue)}\n<!-- /${name} -->`);
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(ERRORS_DOC, renderErrorsDoc(readFileSync(ERRORS_DOC, 'utf8')));
  console.log(`wrote ${ERRORS_DOC}`);
}
