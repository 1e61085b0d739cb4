// Corpus folders: inputs stored one per file, named by their content's hash, so that a run can
// add to a folder without duplicates and a later run starts from where the last one got.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function hashOf(input: Uint8Array): string {
  return createHash('sha1').update(input).digest('hex').slice(0, 16);
}

/** The inputs in `dir` (none when it does not exist), in name order. */
export function readCorpus(dir: string): Array<{ name: string; input: Uint8Array }> {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isFile() && !e.name.endsWith('.txt'))
    .map((e) => e.name)
    .sort()
    .map((name) => ({ name, input: new Uint8Array(readFileSync(join(dir, name))) }));
}

/** Stores `input` in `dir` under its hash (with `note` beside it, for findings); returns the path. */
export function store(dir: string, input: Uint8Array, prefix = '', note?: string): string {
  mkdirSync(dir, { recursive: true });
  const path = join(dir, prefix + hashOf(input));
  writeFileSync(path, input);
  if (note !== undefined) writeFileSync(`${path}.txt`, note + '\n');
  return path;
}
