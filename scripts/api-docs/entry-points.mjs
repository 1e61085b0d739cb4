// The entry points the API reference covers: every subpath of package.json's "exports" that has
// types (the root and castling-vit/ops, /train, ...), read from the manifest so that a new
// subpath gets its reference without touching this folder.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * @param {string} root the repository's folder
 * @param {string} typesRoot the folder that holds the emitted lib/ declarations (dist/ normally)
 * @returns {{ importName: string, fileStem: string, declarations: string }[]} the root first, then
 *   the subpaths in the manifest's order; `fileStem` names the entry point's files (no slash).
 */
export function entryPoints(root, typesRoot) {
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const points = [];
  for (const [subpath, target] of Object.entries(manifest.exports)) {
    if (typeof target !== 'object' || typeof target.types !== 'string') continue;
    // "./dist/lib/entry/ops.d.ts" lives at <typesRoot>/lib/entry/ops.d.ts.
    const declarations = join(typesRoot, target.types.replace(/^\.\/dist\//, ''));
    const importName = subpath === '.' ? manifest.name : `${manifest.name}/${subpath.slice(2)}`;
    points.push({ importName, fileStem: importName.replace('/', '-'), declarations });
  }
  return points;
}
