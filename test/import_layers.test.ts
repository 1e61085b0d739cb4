// The TypeScript sources' layering (docs/architecture.md): imports run one way, from the face
// down to the binding, with no circles (type-only imports included), and no file in lib/ is
// longer than MAX_LINES.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { importCircles, libImportGraph, parseExplanation } from './import_graph.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The layers from the top, each a list of paths in lib/ (a folder ends with '/'). A file may
 * import its own layer's files and any layer's below; the first entry that matches a file wins,
 * so the files named at the top come before the root folder's catch-all.
 */
const LAYERS: ReadonlyArray<{ name: string; paths: readonly string[] }> = [
  { name: 'face', paths: ['lib/index.ts', 'lib/cli.ts', 'lib/vision_transformer.ts', 'lib/entry/', 'lib/commands/'] },
  { name: 'workflows and formats', paths: ['lib/train/', 'lib/serve/', 'lib/data/', 'lib/demo/', 'lib/io/'] },
  { name: 'model', paths: ['lib/nn/'] },
  { name: 'binding', paths: ['lib/native.ts'] },
  { name: 'errors', paths: ['lib/errors.ts'] },
  { name: 'runtime', paths: ['lib/'] },
];
/**
 * The order of the layers, top first (the binding and the errors are matched before the runtime's
 * catch-all). The error classes are the floor: every layer throws them, the binding included.
 */
const ORDER = ['face', 'workflows and formats', 'model', 'runtime', 'binding', 'errors'];

/** No file in lib/ longer than this: past it a file is doing more than one job. */
const MAX_LINES = 400;

function layerOf(file: string): string {
  const layer = LAYERS.find((l) => l.paths.some((p) => (p.endsWith('/') ? file.startsWith(p) : file === p)));
  if (!layer) throw new Error(`${file} is in no layer: add it to LAYERS`);
  return layer.name;
}

/** Imports that go up the layer order, as 'importer (layer) -> imported (layer)'. */
function upwardImports(graph: Map<string, Set<string>>): string[] {
  const rank = (file: string) => ORDER.indexOf(layerOf(file));
  const found: string[] = [];
  for (const [from, targets] of graph) {
    for (const to of targets) if (rank(to) < rank(from)) found.push(`${from} (${layerOf(from)}) -> ${to} (${layerOf(to)})`);
  }
  return found.sort();
}

function libFiles(dir = join(root, 'lib')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? libFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [relative(root, join(dir, e.name))] : []));
}

describe('import layers of lib/', () => {
  const graph = libImportGraph();

  it('reads the whole graph (the compiler output is still understood)', () => {
    // Every file but the package's entries (the root, the CLI, the subpaths) is imported by some
    // file: a parse that lost lines would show here.
    const imported = new Set([...graph.values()].flatMap((s) => [...s]));
    const entry = (f: string) => f === 'lib/index.ts' || f === 'lib/cli.ts' || f.startsWith('lib/entry/');
    expect(libFiles().filter((f) => !imported.has(f) && !entry(f))).toEqual([]);
  });

  it('has no import circles, type-only imports included', () => {
    expect(importCircles(graph)).toEqual([]);
  });

  it('imports run down the layers only', () => {
    expect(upwardImports(graph)).toEqual([]);
  });

  it('gathers every file that defines members of a class into lib/vision_transformer.ts', () => {
    // A file that attaches members (attach.ts) and is not imported there would leave them
    // undefined for the package's users, while their types say they exist.
    const attaching = libFiles().filter((f) => f !== 'lib/attach.ts' && readFileSync(join(root, f), 'utf8').includes('attachMembers('));
    expect(attaching.length).toBeGreaterThan(0);
    const gathered = graph.get('lib/vision_transformer.ts') ?? new Set();
    expect(attaching.filter((f) => !gathered.has(f))).toEqual([]);
  });

  it('puts every file of lib/ in a layer', () => {
    for (const file of libFiles()) expect(ORDER).toContain(layerOf(file));
  });

  it(`has no file in lib/ over ${MAX_LINES} lines`, () => {
    const long = libFiles()
      .map((file) => ({ file, lines: readFileSync(join(root, file), 'utf8').split('\n').length - 1 }))
      .filter((f) => f.lines > MAX_LINES)
      .map((f) => `${f.file}: ${f.lines} lines`);
    expect(long).toEqual([]);
  });

  it('finds circles and upward imports in a graph that has them (the checks can fail)', () => {
    const bad = parseExplanation(
      [
        'lib/nn/vit.ts',
        "  Imported via '../nn/vit.js' from file 'lib/io/onnx/export_vit.ts'",
        'lib/io/onnx/export_vit.ts',
        "  Imported via '../io/onnx/export_vit.js' from file 'lib/nn/vit.ts'",
        'lib/native.ts',
        "  Imported via './native.js' from file 'lib/tensor.ts'",
      ].join('\n'),
    );
    expect(importCircles(bad)).toEqual([['lib/io/onnx/export_vit.ts', 'lib/nn/vit.ts']]);
    expect(upwardImports(bad)).toEqual(['lib/nn/vit.ts (model) -> lib/io/onnx/export_vit.ts (workflows and formats)']);
  });
});
