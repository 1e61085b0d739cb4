// Loads the benchmark-only addon, castling_vit_bench.node: GEMM timing and the measured FMA peak,
// on the same core library as the shipped addon but never part of the package's binaries (CMake
// builds it next to castling_vit.node in `npm run build:native`; binding.gyp and the prebuilds
// do not). Looked for at CASTLING_BENCH_ADDON_PATH when set, else next to the addon that
// CASTLING_ADDON_PATH names (the sanitizer and emulation builds), else in build/Release.
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

import { packageRoot } from '../lib/native.js';
import type { CpuPath } from '../lib/index.js';

export interface BenchAddon {
  /**
   * The wall time (ms) of each of `repeats` products C = A.B on random inputs prepared once, after
   * a warm-up, on the CPU path `isa` (the best one by default). bCopies: cycle through that many
   * copies of B (weights coming from memory, not cache).
   */
  timeGemm(
    options: {
      M: number;
      N: number;
      K: number;
      transA?: boolean;
      transB?: boolean;
      threads: number;
      repeats: number;
      bCopies?: number;
      /** B packed once before the timed region (as the linear op keeps a weight), not on every call. */
      packedB?: boolean;
    },
    isa?: CpuPath,
  ): Promise<number[]>;
  /**
   * The GEMM micro-kernel's own GFLOP/s on one thread, its panels in L1 and L2 (no memory, packing
   * or threads in the way), A packed and A's rows read in place: best of a few tries of about `ms`.
   * prefetchesB: whether this CPU's variant asks for B's lines ahead; prefetchesNextBlock: whether
   * its GEMMs ask for the next block of a B packed beforehand into L2 (docs/benchmarks.md).
   */
  timeMicroKernel(options: { isa?: CpuPath; ms?: number }): Promise<{
    mr: number;
    nr: number;
    kc: number;
    prefetchesB: boolean;
    prefetchesNextBlock: boolean;
    packedGflops: number;
    directGflops: number;
  }>;
  /** GFLOP/s of `threads` threads running independent FMA chains of `isa` at once, best of a few tries of about `ms` each. */
  measureFmaPeak(options: { isa?: CpuPath; threads?: number; ms?: number }): Promise<number>;
}

export const BENCH_ADDON_NAME = 'castling_vit_bench.node';

/** Where the benchmark addon is looked for (see the file's comment). */
export function benchAddonPath(): string {
  if (process.env.CASTLING_BENCH_ADDON_PATH) return process.env.CASTLING_BENCH_ADDON_PATH;
  if (process.env.CASTLING_ADDON_PATH) return join(dirname(process.env.CASTLING_ADDON_PATH), BENCH_ADDON_NAME);
  return join(packageRoot(), 'build', 'Release', BENCH_ADDON_NAME);
}

let loaded: BenchAddon | undefined;

/** The benchmark addon, loaded on first use; throws a clear error when it is not built. */
export function benchAddon(): BenchAddon {
  if (loaded) return loaded;
  const path = benchAddonPath();
  if (!existsSync(path)) {
    throw new Error(`castling-vit: the benchmark addon is not built: run npm run build:native (no ${path})`);
  }
  try {
    loaded = createRequire(import.meta.url)(path) as BenchAddon;
  } catch (error) {
    throw new Error(`castling-vit: the benchmark addon at ${path} could not be loaded (${error instanceof Error ? error.message : String(error)}): run npm run build:native`);
  }
  return loaded;
}
