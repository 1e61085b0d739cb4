// For scripts/check-package.sh: the package.json and package-lock.json of an empty project that
// depends on a packed castling-vit tarball, its dependencies pinned to the versions this
// checkout's lock holds (all within the package's ranges). With a lock, `npm ci --offline`
// installs from npm's cache alone: a plain `npm install` would ask the registry for each
// package's version list, which the cache may not keep.
//   node scripts/user-project-lock.mjs <project folder> <tarball file name> <tarball integrity>
// The tarball lies in the project's parent folder.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const [project, tarball, integrity] = process.argv.slice(2);
if (!project || !tarball || !integrity) {
  console.error('usage: node scripts/user-project-lock.mjs <project folder> <tarball file name> <tarball integrity>');
  process.exit(2);
}
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const lock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
// What was packed: this checkout's package.json, not the lock's copy of it (they may differ).
const packed = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const spec = `file:../${tarball}`;
const manifest = { name: 'castling-vit-user', version: '1.0.0', private: true, dependencies: { 'castling-vit': spec } };

/** Where npm finds `name` for the package at `from` ('' is the checkout): nested first, then above. */
function resolve(from, name) {
  for (let base = from; ; ) {
    const path = `${base ? `${base}/` : ''}node_modules/${name}`;
    if (lock.packages[path]) return path;
    if (!base) return null;
    const up = base.lastIndexOf('/node_modules/');
    base = up < 0 ? '' : base.slice(0, up);
  }
}

/** The names a package needs installed: dependencies, optional ones, and peers that are not optional. */
function needs(entry) {
  const peers = Object.keys(entry.peerDependencies ?? {}).filter((p) => !entry.peerDependenciesMeta?.[p]?.optional);
  return [...Object.keys(entry.dependencies ?? {}), ...Object.keys(entry.optionalDependencies ?? {}), ...peers];
}

const { name, version, license, dependencies, optionalDependencies, bin, engines, peerDependencies, peerDependenciesMeta } = packed;
const self = { version, resolved: spec, integrity, hasInstallScript: Boolean(packed.scripts?.install), license, dependencies, optionalDependencies, bin, engines, peerDependencies, peerDependenciesMeta };
const packages = {
  '': { name: manifest.name, version: manifest.version, dependencies: manifest.dependencies },
  [`node_modules/${name}`]: self,
};
// The packed package's dependency tree as the lock holds it, at the same paths: the checkout's
// own dependencies lie where the user's project has castling-vit's, hoisted beside it.
const queue = [['', self]];
while (queue.length > 0) {
  const [from, entry] = queue.shift();
  for (const dependency of needs(entry)) {
    const path = resolve(from, dependency);
    if (path === null) {
      const optional = dependency in (entry.optionalDependencies ?? {});
      if (optional) continue;
      console.error(`user-project-lock: package-lock.json has no ${dependency} (needed by ${from || name}): run npm install`);
      process.exit(1);
    }
    if (packages[path]) continue;
    const { dev, devOptional, ...installed } = lock.packages[path];
    if (devOptional) installed.optional = true;
    packages[path] = installed;
    queue.push([path, installed]);
  }
}
writeFileSync(join(project, 'package.json'), JSON.stringify(manifest, null, 2) + '\n');
writeFileSync(join(project, 'package-lock.json'), JSON.stringify({ name: manifest.name, version: manifest.version, lockfileVersion: 3, requires: true, packages }, null, 2) + '\n');
