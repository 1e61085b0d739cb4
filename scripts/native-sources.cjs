// Prints the files of one group of native/sources.txt, one per line, for binding.gyp's command
// expansion (<!@(node scripts/native-sources.cjs core)): the node-gyp build reads the same list as
// CMake (cmake/sources.cmake). Paths are relative to the package root, where node-gyp runs this.
'use strict';
const { readFileSync } = require('node:fs');
const { join } = require('node:path');

const group = process.argv[2];
const lines = readFileSync(join(__dirname, '..', 'native', 'sources.txt'), 'utf8').split(/\r?\n/).map((line) => line.trim());
const groups = new Map();
let current = null;
for (const line of lines) {
  if (line === '' || line.startsWith('#')) continue;
  const header = /^\[([a-z0-9_]+)\]$/.exec(line);
  if (header) groups.set((current = header[1]), []);
  else if (current === null) throw new Error(`native/sources.txt: '${line}' comes before any [group] line`);
  else groups.get(current).push(line);
}
if (!groups.has(group)) {
  console.error(`native-sources: no group '${group}' in native/sources.txt (it has ${[...groups.keys()].join(', ')})`);
  process.exit(1);
}
console.log(groups.get(group).join('\n'));
