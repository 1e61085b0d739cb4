// `npm install` step for the native addon: use a prebuilt binary when one matches this platform
// (prebuilds/, as published), else build from source with cmake-js, else with node-gyp. Fails
// with a message that says what to install when no route works.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { installRoute } from './install-route.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);

function hasPrebuild() {
  try {
    require('node-gyp-build').path(root);
    return true;
  } catch {
    return false;
  }
}

function run(command, args) {
  console.log(`castling-vit: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
  return result.status === 0;
}

if (installRoute(process.env, hasPrebuild()) === 'prebuilt') {
  console.log('castling-vit: using the prebuilt native addon');
  process.exit(0);
}

// CASTLING_CUDA=AUTO|ON|OFF chooses the CUDA backend (cmake/cuda.cmake; AUTO when unset).
const cudaMode = process.env.CASTLING_CUDA ? [`--CDCASTLING_CUDA=${process.env.CASTLING_CUDA}`] : [];
if (run(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--out', 'build', ...cudaMode])) process.exit(0);
console.warn('castling-vit: the cmake-js build failed; trying node-gyp (binding.gyp)');
if (run('npx', ['--no-install', 'node-gyp', 'rebuild'])) process.exit(0);
console.error(
  'castling-vit: could not build the native addon and no prebuilt binary matches ' +
    `${process.platform}-${process.arch}. Install CMake (>= 3.18) and a C++20 compiler ` +
    '(g++ >= 11 or clang >= 14), then run `npm rebuild castling-vit`.',
);
process.exit(1);
