// Every code sample in README.md and docs/*.md runs, so that the guides cannot rot: ts and js
// samples as ES modules that import the package by its name, sh samples with `npx castling-vit`
// meaning the built CLI (dist/lib/cli.js). Also: the guides link only to files of the repository.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';

import { afterAll, describe, expect, it } from 'vitest';

import { applyTinyValues, extractSamples, type Sample } from './doc_samples.js';

const root = resolve(import.meta.dirname, '..');
const cli = join(root, 'dist', 'lib', 'cli.js');
// docs/ itself, not its subfolders: docs/api/ is the generated API reference, with no samples to
// run, and test/api_docs.test.ts checks its links.
const guides = ['README.md', ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).sort().map((f) => `docs/${f}`)];

// `npx castling-vit` in a sample means the CLI built here; any other npx would reach the network.
const shellPrelude = `set -euo pipefail
npx() {
  if [ "$1" != castling-vit ]; then echo "a sample may run only 'npx castling-vit', not 'npx $1'" >&2; return 2; fi
  shift
  node "$CASTLING_CLI" "$@" $CASTLING_TINY
}
`;

// Generous limits: a loaded machine runs the samples several times slower than an idle one.
const SAMPLE_TIMEOUT_MS = 180_000;
const GUIDE_TIMEOUT_MS = 600_000;

const scratch: string[] = [];
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

/**
 * A folder where `import ... from 'castling-vit'` finds this repository as an installed package,
 * and `'sharp'` its dependency, as npm places it beside the package.
 */
function scratchFolder(): string {
  const dir = mkdtempSync(join(tmpdir(), 'castling-doc-samples-'));
  scratch.push(dir);
  mkdirSync(join(dir, 'node_modules'));
  symlinkSync(root, join(dir, 'node_modules', 'castling-vit'), 'dir');
  symlinkSync(join(root, 'node_modules', 'sharp'), join(dir, 'node_modules', 'sharp'), 'dir');
  return dir;
}

function runSample(sample: Sample, cwd: string): { status: number | null; output: string } {
  const env = { ...process.env, CASTLING_CLI: cli, CASTLING_TINY: sample.language === 'sh' ? (sample.tiny ?? '') : '' };
  const result =
    sample.language === 'sh'
      ? spawnSync('bash', ['-c', shellPrelude + sample.code], { cwd, env, encoding: 'utf8', timeout: SAMPLE_TIMEOUT_MS })
      : (() => {
          const file = join(cwd, `sample-${sample.line}.mjs`);
          writeFileSync(file, applyTinyValues(sample));
          return spawnSync(process.execPath, [file], { cwd, env, encoding: 'utf8', timeout: SAMPLE_TIMEOUT_MS });
        })();
  return { status: result.status, output: `${result.stdout}${result.stderr}${result.error ? String(result.error) : ''}` };
}

describe('code samples of the guides', () => {
  for (const guide of guides) {
    const samples = extractSamples(readFileSync(join(root, guide), 'utf8'), guide);
    const run = samples.filter((s) => !s.notRun);
    it.runIf(run.length > 0)(`${guide}: ${run.length} of ${samples.length} samples run as written`, () => {
      const cwd = scratchFolder();
      for (const sample of run) {
        const { status, output } = runSample(sample, cwd);
        // The message names the sample and shows what it printed: that is what a reader fixes.
        expect(status, `${sample.file}:${sample.line} (${sample.language}) failed:\n${output}`).toBe(0);
      }
    }, GUIDE_TIMEOUT_MS);
  }

  it('keeps the samples that do not run few', () => {
    const all = guides.flatMap((g) => extractSamples(readFileSync(join(root, g), 'utf8'), g));
    const skipped = all.filter((s) => s.notRun);
    expect(all.length).toBeGreaterThan(10);
    expect(skipped.length, skipped.map((s) => `${s.file}:${s.line} ${s.notRun}`).join('\n')).toBeLessThanOrEqual(Math.ceil(all.length / 4));
  });
});

describe('links of the guides', () => {
  for (const guide of guides) {
    it(`${guide} links only to files of the repository that exist`, () => {
      const text = readFileSync(join(root, guide), 'utf8');
      expect(text, `${guide} links outside the repository`).not.toMatch(/\]\((?:[a-z]+:)?\/\//i);
      for (const [, target] of text.matchAll(/\]\(([^)#\s]+)(?:#[^)]*)?\)/g)) {
        const path = resolve(root, dirname(guide), target!);
        expect(relative(root, path).startsWith('..'), `${guide} links to ${target}, outside the repository`).toBe(false);
        expect(existsSync(path), `${guide} links to ${target}, which does not exist`).toBe(true);
      }
    });
  }
});
