// The API reference in docs/api/ is what `npm run docs` writes from lib/'s declarations today: the
// test emits the declarations and regenerates the reference in a temporary folder, and the two
// must be equal, so a changed export or doc comment without `npm run docs` fails here. Also: every
// export of the root has its page, and the pages link only to pages that exist.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import { scratchDirectory } from './helpers.js';

const root = resolve(import.meta.dirname, '..');
const committed = join(root, 'docs', 'api');
const scratch = scratchDirectory('castling-api-docs-');
const regenerated = join(scratch, 'api');

function run(args: string[]): void {
  const result = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8' });
  expect(result.status, `node ${args.join(' ')}:\n${result.stdout}${result.stderr}`).toBe(0);
}

beforeAll(() => {
  // Declarations from lib/ as it is now, not dist/, which may be older than the sources.
  run([join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json', '--emitDeclarationOnly', '--outDir', join(scratch, 'dist')]);
  run([join(root, 'scripts', 'api-docs', 'generate.mjs'), '--types', join(scratch, 'dist'), '--out', regenerated]);
}, 120_000);

const pagesOf = (folder: string) => readdirSync(folder).filter((f) => f.endsWith('.md')).sort();

describe('API reference (docs/api)', () => {
  it('is what `npm run docs` writes from the current declarations', () => {
    const fresh = pagesOf(regenerated);
    const stale = pagesOf(committed);
    expect(stale, 'docs/api has other pages than the declarations give: run `npm run docs`').toEqual(fresh);
    const differing = fresh.filter((page) => readFileSync(join(regenerated, page), 'utf8') !== readFileSync(join(committed, page), 'utf8'));
    expect(differing, 'these pages differ from the declarations: run `npm run docs`').toEqual([]);
  });

  it('has a page for every export of the root, linked from the root page', async () => {
    const declared = exportedNames(readFileSync(join(scratch, 'dist', 'lib', 'index.d.ts'), 'utf8'));
    // The values the root exports at run time must all be among the names read from its
    // declarations: a check that the reading above misses none.
    for (const name of Object.keys(await import('../lib/index.js'))) expect(declared, name).toContain(name);
    expect(declared.length).toBeGreaterThan(50);
    const rootPage = readFileSync(join(committed, 'castling-vit.md'), 'utf8');
    for (const name of declared) {
      // Link text is markdown: DEFAULT_MAX_INPUT_PIXELS is written DEFAULT\_MAX\_INPUT\_PIXELS,
      // a function backendInfo().
      const text = name.replaceAll('_', '\\_');
      const link = new RegExp(`\\[${text.replaceAll('\\', '\\\\')}(?:\\([^)]*\\))?\\]\\(\\./(castling-vit\\.[^)]+\\.md)\\)`).exec(rootPage);
      expect(link, `${name}: not listed on docs/api/castling-vit.md`).not.toBeNull();
      const page = join(committed, link![1]!);
      expect(existsSync(page), `${name}: docs/api/${link![1]} does not exist`).toBe(true);
      // Its own page, not one that another name, equal but for case, wrote over.
      expect(readFileSync(page, 'utf8'), `${name}: docs/api/${link![1]}`).toMatch(new RegExp(`^## ${text.replaceAll('\\', '\\\\')}(?:\\(\\))? `, 'm'));
    }
  });

  it('has a page per entry point, and links only to its own pages', () => {
    const index = readFileSync(join(committed, 'index.md'), 'utf8');
    for (const subpath of ['', ...readdirSync(join(root, 'lib', 'entry')).map((f) => `-${f.replace(/\.ts$/, '')}`)]) {
      expect(index, `castling-vit${subpath}`).toContain(`(./castling-vit${subpath}.md)`);
    }
    for (const page of pagesOf(committed)) {
      const text = readFileSync(join(committed, page), 'utf8');
      expect(text, `${page} links outside the repository`).not.toMatch(/\]\((?:[a-z]+:)?\/\//i);
      for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        expect(existsSync(join(committed, target!)), `${page} links to ${target}, which does not exist`).toBe(true);
      }
    }
  });
});

/** The names in a declaration file's `export { a, type B } from '...'` and `export * as c` lines. */
function exportedNames(declarations: string): string[] {
  const names: string[] = [];
  for (const [, list] of declarations.matchAll(/^export \{([^}]*)\}/gm)) {
    for (const item of list!.split(',')) {
      const name = item.trim().replace(/^type\s+/, '').split(/\s+as\s+/).pop()!;
      if (name) names.push(name);
    }
  }
  for (const [, name] of declarations.matchAll(/^export \* as (\w+)/gm)) names.push(name!);
  return names.sort();
}
