// What the engine runs on, and its knobs: the CPU path and the thread count. One name for one
// idea: a CPU path ('scalar' | 'avx2' | 'avx512', the kernels' instruction set) is set by
// setCpuPath or CASTLING_CPU and read as backendInfo().cpuPath.
import { native, type NativeCudaStatus } from './native.js';
import { InvalidArgTypeError, InvalidArgValueError } from './errors.js';

export type CpuPath = 'scalar' | 'avx2' | 'avx512';

export interface BackendInfo {
  /** Package version. */
  version: string;
  /** The CPU path the kernels use now. */
  cpuPath: CpuPath;
  /** The CPU paths this CPU can run, portable C++ ('scalar') first. */
  supportedCpuPaths: CpuPath[];
  /** @deprecated The old name of cpuPath, kept for the 0.x releases; read cpuPath. */
  isa: CpuPath;
  /** @deprecated The old name of supportedCpuPaths, kept for the 0.x releases. */
  supportedIsas: CpuPath[];
  /** The CPU's brand string. */
  cpu: string;
  /** Threads in the pool. */
  threads: number;
  /**
   * How long, in microseconds, an idle pool thread spins for the next kernel before it sleeps
   * (CASTLING_SPIN_US; default 1000, 0: sleep at once).
   */
  spinMicroseconds: number;
  /**
   * The most bytes of freed native memory kept for reuse by later passes (CASTLING_CACHE_MB;
   * default 1/8 of physical memory, 0: keep nothing).
   */
  cacheLimitBytes: number;
  /** CUDA availability, and why not when it is not (with the GPU's name and memory when it is). */
  cuda: CudaStatus;
}

export type CudaStatus = NativeCudaStatus;

/**
 * Whether tensors and models can use device 'cuda', and why not: a CPU-only build says so and
 * how to rebuild; a CUDA build on a machine without a usable GPU gives the CUDA error.
 */
export function cudaAvailable(): CudaStatus {
  return native.cudaAvailable();
}

export function backendInfo(): BackendInfo {
  const info = native.backendInfo();
  return {
    version: info.version,
    cpuPath: info.isa,
    supportedCpuPaths: [...info.supportedIsas],
    isa: info.isa,
    supportedIsas: [...info.supportedIsas],
    cpu: info.cpu,
    threads: info.threads,
    spinMicroseconds: info.spinMicroseconds,
    cacheLimitBytes: info.cacheLimitBytes,
    cuda: info.cuda,
  };
}

/** Sets the thread pool's size (1 to 256). The default is CASTLING_THREADS or the CPUs available. */
export function setThreads(threads: number): void {
  if (typeof threads !== 'number' || !Number.isInteger(threads) || threads < 1 || threads > 256) {
    throw new InvalidArgValueError(`setThreads: ${String(threads)} is not valid, expected an integer from 1 to 256`);
  }
  native.setThreads(threads);
}

/**
 * Forces a CPU path ('scalar' | 'avx2' | 'avx512'), as CASTLING_CPU does at start-up. Asking for
 * a path this CPU lacks throws (it never crashes later with an illegal instruction).
 */
export function setCpuPath(path: CpuPath): void {
  if (path !== 'scalar' && path !== 'avx2' && path !== 'avx512') {
    throw new InvalidArgTypeError(`setCpuPath: unknown CPU path '${String(path)}', expected 'scalar', 'avx2' or 'avx512'`);
  }
  native.setIsa(path);
}

/**
 * Frees the native memory blocks kept for reuse. Freed tensors' memory is cached (bounded by
 * CASTLING_CACHE_MB, default 1/8 of physical memory) so that repeated passes allocate nothing
 * from the OS; call this after a large model is done to give the memory back.
 */
export function releaseCachedMemory(): void {
  native.releaseCachedMemory();
}

/**
 * Waits until the work queued on the GPU has finished. Ops and model calls on device 'cuda'
 * resolve once their kernels are queued, and reading a result back waits for them; timing GPU
 * work needs this call first. Without CUDA it returns at once.
 */
export function synchronizeCuda(): void {
  native.synchronizeCuda();
}

/** Bytes of native memory alive now: tensors (disposed ones excluded) and kernel scratch. */
export function nativeMemoryBytes(): number {
  return native.memoryStats().liveBytes;
}
