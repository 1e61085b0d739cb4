// The package's entry points: package.json's exports and lib/entry/ agree, each name has one
// home, and the root keeps to what a model's user needs (no op named like an attention kind).
// scripts/check-package.sh checks the same entry points from a packed, installed tarball.
import { readFileSync, readdirSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

const manifest = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const subpaths = readdirSync(new URL('../lib/entry/', import.meta.url))
  .filter((f) => f.endsWith('.ts'))
  .map((f) => f.slice(0, -3))
  .sort();

async function namesOf(module: string): Promise<string[]> {
  return Object.keys(await import(module)).sort();
}

describe('entry points', () => {
  it('package.json exports the root and one subpath per lib/entry module, each with types, import and require', () => {
    const expected: Record<string, unknown> = { '.': entry('index'), './package.json': './package.json' };
    for (const name of subpaths) expected[`./${name}`] = entry(`entry/${name}`);
    expect(manifest.exports).toEqual(expected);
  });

  it('scripts/check-package.sh loads every subpath', () => {
    const script = readFileSync(new URL('../scripts/check-package.sh', import.meta.url), 'utf8');
    const listed = /^subpaths="([^"]*)"$/m.exec(script)?.[1]?.split(' ').sort();
    expect(listed).toEqual(subpaths);
  });

  it('the root has no op or training workflow, and a name lives in one entry point', async () => {
    const root = await namesOf('../lib/index.js');
    for (const name of ['softmax', 'matmul', 'linear', 'backward', 'attention', 'PlanBuilder', 'sparsify', 'loadDigits', 'serveModel', 'readSafetensors']) {
      expect(root, name).not.toContain(name);
    }
    const home = new Map<string, string>(root.map((n) => [n, 'root']));
    // The one name in two places: what VisionTransformer.load throws, also beside the reader.
    const shared = new Set(['SafetensorsError']);
    for (const name of subpaths) {
      for (const exported of await namesOf(`../lib/entry/${name}.js`)) {
        if (!shared.has(exported)) expect(home.get(exported), `${exported} in ${name}`).toBeUndefined();
        home.set(exported, name);
      }
    }
  });
});

function entry(base: string) {
  return { types: `./dist/lib/${base}.d.ts`, import: `./dist/lib/${base}.js`, require: `./dist/lib/${base}.js` };
}
