// `npm run docs` (after tsc): writes the API reference, docs/api/, from the published
// declarations of the root and every subpath entry point. API Extractor reads the .d.ts files
// (extract.mjs), API Documenter writes one markdown page per exported item (markdown.mjs), and
// tidy.mjs makes the pages the repository's own (entry point names, no links outside it).
// Usage: node scripts/api-docs/generate.mjs [--types <folder holding lib/*.d.ts>] [--out <folder>]
//   defaults: --types dist --out docs/api. The test regenerates into a temporary folder.
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { entryPoints } from './entry-points.mjs';
import { extractModels } from './extract.mjs';
import { writeMarkdown } from './markdown.mjs';
import { tidyReference } from './tidy.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

const { values } = parseArgs({ options: { types: { type: 'string', default: 'dist' }, out: { type: 'string', default: 'docs/api' } } });
const typesRoot = resolve(root, values.types);
const out = resolve(root, values.out);

const points = entryPoints(root, typesRoot);
const missing = points.find((p) => !existsSync(p.declarations));
if (missing) fail(`no ${missing.declarations}: build the declarations first (npm run docs does: tsc -p tsconfig.json)`);
const models = mkdtempSync(join(tmpdir(), 'castling-api-models-'));
try {
  const warnings = extractModels(root, points, models);
  // API Documenter empties the output folder first: docs/api/ holds nothing hand-written.
  writeMarkdown(models, out);
  const pages = tidyReference(out, points);
  console.log(`api-docs: ${pages} pages for ${points.length} entry points in ${values.out}${warnings ? ` (${warnings} warnings above)` : ''}`);
} catch (error) {
  // The message alone: it names the page or the declaration file at fault.
  console.error(`api-docs: ${error instanceof Error ? error.message : String(error)}`);
  process.exitCode = 1;
} finally {
  rmSync(models, { recursive: true, force: true });
}

function fail(message) {
  console.error(`api-docs: ${message}`);
  process.exit(1);
}
