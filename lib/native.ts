// Loads the native addon: the file CASTLING_ADDON_PATH names when it is set (test builds), else a
// prebuilt binary from prebuilds/, else the local build in build/Release (node-gyp-build's order),
// else an error that says what to run.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { UnsupportedError } from './errors.js';

/** The raw tensor handle the addon exports (wrapped by the public Tensor class). */
export interface NativeTensor {
  readonly shape: number[];
  readonly numel: number;
  readonly disposed: boolean;
  dispose(): void;
  toFloat32Array(): Float32Array;
  view(): Float32Array;
  copyFrom(data: Float32Array): void;
  reshape(shape: number[]): NativeTensor;
  readonly device: 'cpu' | 'cuda';
  readonly dtype: 'float32' | 'bfloat16' | 'float16';
  /** A copy on that device (this handle when it is there already); throws when the device is not available. */
  to(device: 'cpu' | 'cuda'): NativeTensor;
}

/** CUDA's state: available, or the reason why not. */
export interface NativeCudaStatus {
  available: boolean;
  /** Whether this build has the CUDA backend at all. */
  built: boolean;
  reason?: string;
  device?: string;
  computeCapability?: number;
  multiprocessors?: number;
  memoryBytes?: number;
  runtimeVersion?: number;
  driverVersion?: number;
}

export interface NativeBackendInfo {
  version: string;
  isa: 'scalar' | 'avx2' | 'avx512';
  supportedIsas: Array<'scalar' | 'avx2' | 'avx512'>;
  cpu: string;
  threads: number;
  defaultThreads: number;
  spinMicroseconds: number;
  cacheLimitBytes: number;
  cuda: NativeCudaStatus;
  ops: string[];
}

export type Attrs = Record<string, number | boolean | undefined>;

export interface NativeAddon {
  NativeTensor: new (shape: number[], data?: Float32Array) => NativeTensor;
  NativePlan: new (steps: Array<{ op: string; inputs: number[]; outputs: number[]; attrs: Attrs }>, slotCount: number, keep: number[], options?: { cudaGraph?: number[] }) => {
    run(slots: Array<NativeTensor | null>, async: true, profile?: boolean): Promise<NativeTensor[] & { stepMs?: number[] }>;
    run(slots: Array<NativeTensor | null>, async: false): NativeTensor[];
    graphCaptures(): number;
  };
  runOp(name: string, inputs: Array<NativeTensor | null>, attrs: Attrs, async: false): NativeTensor[];
  runOp(name: string, inputs: Array<NativeTensor | null>, attrs: Attrs, async: true): Promise<NativeTensor[]>;
  backendInfo(): NativeBackendInfo;
  cudaAvailable(): NativeCudaStatus;
  setThreads(threads: number): void;
  setIsa(isa: string): void;
  /** Live and peak bytes of native memory; `resetPeak` starts a new peak measurement afterwards. */
  memoryStats(resetPeak?: boolean): { liveBytes: number; peakBytes: number; cachedBytes: number };
  releaseCachedMemory(): void;
  synchronizeCuda(): void;
  /** true: record the thread pool's jobs; false: stop and return them (bench/scaling.ts). */
  tracePool(start: true): void;
  tracePool(start: false): PoolTraceRegion[];
}

/** One job of the thread pool as the trace records it (native/core/pool_trace.h). */
export interface PoolTraceRegion {
  dynamic: boolean;
  lanes: number;
  /** The op whose job it was ('' outside ops). */
  op: string;
  serialBeforeNs: number;
  pieceNs: Float64Array;
}

/** The package root: the nearest folder above this file whose package.json is ours. */
export function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && JSON.parse(readFileSync(manifest, 'utf8')).name === 'castling-vit') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new UnsupportedError('castling-vit: cannot find the package root above ' + fileURLToPath(import.meta.url));
    dir = parent;
  }
}

function load(): NativeAddon {
  const require = createRequire(import.meta.url);
  // A build of the addon other than the package's own (the sanitizer and CUDA-emulation test
  // builds): the path of its .node file.
  const override = process.env.CASTLING_ADDON_PATH;
  if (override) {
    try {
      return require(override) as NativeAddon;
    } catch (error) {
      throw new UnsupportedError(`castling-vit: CASTLING_ADDON_PATH is ${override}, which could not be loaded (${error instanceof Error ? error.message : String(error)})`);
    }
  }
  const root = packageRoot();
  try {
    const nodeGypBuild = require('node-gyp-build') as (dir: string) => NativeAddon;
    return nodeGypBuild(root);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new UnsupportedError(
      `castling-vit: the native addon could not be loaded (${reason}). ` +
        `No prebuilt binary matches ${process.platform}-${process.arch} and there is no local build: ` +
        'run `npm rebuild castling-vit` (needs CMake >= 3.18 and a C++20 compiler), ' +
        'or `npm run build:native` in a clone of the repository.',
    );
  }
}

export const native: NativeAddon = load();
