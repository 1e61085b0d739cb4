// `npm run prebuilds`: the binary that a published package ships, built through the same CMake
// path that `npm install` takes from source (cmake-js), CPU-only (a CUDA build needs the user's
// toolkit) and without the benchmark-only addon, stripped, and named as node-gyp-build looks for it:
// prebuilds/<platform>-<arch>/castling-vit.napi.node (N-API: one binary for every Node version).
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const buildDir = 'build-prebuild';

function run(command, args) {
  console.log(`prebuilds: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit' });
  if (result.error) throw result.error;
  return result.status === 0;
}

if (!run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'rebuild', '--out', buildDir, '--CDCASTLING_CUDA=OFF', '--CDCASTLING_BENCH_ADDON=OFF'])) {
  console.error('prebuilds: the CMake build failed (see above)');
  process.exit(1);
}
const built = join(root, buildDir, 'Release', 'castling_vit.node');
// 32-bit ARM binaries differ by architecture version; node-gyp-build matches the tag.
const armv = process.arch === 'arm' ? `.armv${process.config.variables.arm_version}` : '';
const name = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name;
const target = join(root, 'prebuilds', `${process.platform}-${process.arch}`, `${name}${armv}.napi.node`);
mkdirSync(dirname(target), { recursive: true });
copyFileSync(built, target);
// Symbols only a debugger needs: about half the file.
if (process.platform !== 'win32' && !run('strip', process.platform === 'darwin' ? ['-x', target] : ['--strip-unneeded', target])) {
  console.warn('prebuilds: strip failed; the binary is shipped unstripped');
}
console.log(`prebuilds: ${target}`);
