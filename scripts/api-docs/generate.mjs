// `npm run docs` (after tsc): writes the API reference, docs/api/, from the published
// declarations of the root and every subpath entry point. API Extractor reads the .d.ts files
// (extract.mjs), API Documenter writes one markdown page per exported item, and tidy.mjs makes
// the pages the repository's own (entry point names, no links outside it).
// Usage: node scripts/api-docs/generate.mjs [--types <folder holding lib/*.d.ts>] [--out <folder>]
//   defaults: --types dist --out docs/api. The test regenerates into a temporary folder.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { entryPoints } from './entry-points.mjs';
import { extractModels } from './extract.mjs';
import { tidyReference } from './tidy.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const require = createRequire(import.meta.url);

const { values } = parseArgs({ options: { types: { type: 'string', default: 'dist' }, out: { type: 'string', default: 'docs/api' } } });
const typesRoot = resolve(root, values.types);
const out = resolve(root, values.out);

const points = entryPoints(root, typesRoot);
const models = mkdtempSync(join(tmpdir(), 'castling-api-models-'));
try {
  const warnings = extractModels(root, points, models);
  // API Documenter empties the output folder first: docs/api/ holds nothing hand-written.
  const documenter = require.resolve('@microsoft/api-documenter/lib/start');
  const result = spawnSync(process.execPath, [documenter, 'markdown', '--input-folder', models, '--output-folder', out], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`API Documenter failed:\n${result.stdout}${result.stderr}`);
  const pages = tidyReference(out, points);
  console.log(`api-docs: ${pages} pages for ${points.length} entry points in ${values.out}${warnings ? ` (${warnings} warnings above)` : ''}`);
} finally {
  rmSync(models, { recursive: true, force: true });
}
