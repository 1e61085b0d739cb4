// The measured FMA peak of this CPU: GFLOP/s of `threads` threads running independent FMA chains
// on the widest vectors of a CPU path at once (the benchmark addon, native/bench/fma_peak.cpp).
// The ceiling to read a kernel's GFLOP/s against: what the FMA units deliver with no memory
// traffic, measured rather than taken from a clock and a data sheet.
import type { CpuPath } from '../lib/index.js';
import { benchAddon } from './bench_addon.js';

/**
 * GFLOP/s of the whole pool of `threads` threads on `isa` (best of a few tries of about `ms`
 * milliseconds each). Rejects when the benchmark addon is not built or the CPU lacks `isa`.
 */
export async function measurePeak(isa: CpuPath, threads: number, ms = 200): Promise<number> {
  return benchAddon().measureFmaPeak({ isa, threads, ms });
}
