// The import graph of lib/, as the TypeScript compiler resolves it: `tsc --explainFiles` says why
// each file is part of the program, one "Imported via '...' from file '...'" line per import,
// `import type` and `export ... from` included (they vanish from the compiled JavaScript, so a
// graph read from dist/ would miss the type-only circles).
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

/** Each file of lib/ (path from the repository root) and the lib/ files it imports. */
export type ImportGraph = Map<string, Set<string>>;

/** The compiler's explanation of the program of `tsconfig` (files and why each is included). */
function explainFiles(tsconfig: string): string {
  const tsc = join(dirname(createRequire(import.meta.url).resolve('typescript/package.json')), 'bin', 'tsc');
  // --noEmit: only the graph is wanted. Type errors print too (exit code 2); the graph is still whole.
  try {
    // (Without the sanitizers' preload, under which the suite may run: the compiler needs none.)
    const env = { ...process.env, LD_PRELOAD: undefined };
    return execFileSync(process.execPath, [tsc, '-p', tsconfig, '--noEmit', '--explainFiles'], { cwd: root, env, encoding: 'utf8', maxBuffer: 64 << 20 });
  } catch (error) {
    const out = (error as { stdout?: string }).stdout;
    if (typeof out === 'string' && out.includes('Imported via')) return out;
    throw error;
  }
}

/** Parses explainFiles' output: a file's path on its own line, then its reasons indented below. */
export function parseExplanation(text: string): ImportGraph {
  const graph: ImportGraph = new Map();
  let file: string | null = null;
  for (const line of text.split('\n')) {
    if (line.length > 0 && !/^\s/.test(line)) {
      file = line.trim();
      continue;
    }
    const m = /^\s+Imported via (['"]).*?\1 from file '([^']+)'/.exec(line);
    if (!m || file === null) continue;
    const importer = m[2]!;
    if (!importer.startsWith('lib/') || !file.startsWith('lib/')) continue;
    if (!graph.has(importer)) graph.set(importer, new Set());
    graph.get(importer)!.add(file);
  }
  return graph;
}

/** The import graph of lib/ (files that import nothing of lib/ are absent as importers). */
export function libImportGraph(): ImportGraph {
  return parseExplanation(explainFiles('tsconfig.json'));
}

/** The import circles of a graph: its strongly connected components of more than one file, or a file importing itself. */
export function importCircles(graph: ImportGraph): string[][] {
  // Tarjan's algorithm.
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const circles: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next);
    next++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v)?.has(v)) circles.push(component.sort());
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return circles;
}
