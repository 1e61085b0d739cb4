// `bench gemm`: SGEMM GFLOP/s per CPU path and thread count at the shapes of a ViT's linear
// layers (M = 197 tokens x batch, weights (N, K) as in PyTorch, so B is transposed). The timed
// region is the native GEMM alone, on random inputs prepared once (the benchmark addon's timeGemm),
// with B packed into the micro-kernel's panels on every call (a GEMM on two arbitrary matrices),
// once beforehand (a linear layer's weight, which the linear op packs once and keeps: the
// difference is the packing's share), or once beforehand but cold (each call multiplies another
// copy, out of more than any cache holds, as a pass reads each layer's weights from memory). Each
// CPU path's micro-kernel is timed alone first, on panels in cache: the ceiling of its GEMMs on
// one thread, which a register spill would lower.
import { backendInfo, setThreads, type CpuPath } from '../lib/index.js';
import { benchAddon } from './bench_addon.js';
import { stats, type BenchRecord } from './common.js';

export interface GemmOptions {
  isas?: CpuPath[];
  threads?: number[];
  repeats?: number;
  /** Where B is packed: 'call' (every call), 'once' (beforehand, as a linear layer's weight); default both. */
  packing?: BPacking[];
  quick?: boolean;
}

export type BPacking = 'call' | 'once' | 'cold';

/** The rounds a path's repetitions are split into (fewer when there are fewer repetitions). */
const ROUNDS = 3;
export const B_PACKINGS: BPacking[] = ['call', 'once', 'cold'];
/** 'cold': the copies of B cycled through, at least this many bytes of them (and one per repetition). */
const COLD_B_BYTES = 128 * 2 ** 20;

export const VIT_SHAPES: Array<[number, number]> = [
  [384, 1152],
  [384, 1536],
  [1536, 384],
  [768, 2304],
  [768, 3072],
  [3072, 768],
];

export async function benchGemm(options: GemmOptions): Promise<BenchRecord[]> {
  const info = backendInfo();
  const isas = options.isas ?? info.supportedCpuPaths.filter((i) => i !== 'scalar');
  const threadCounts = options.threads ?? [1, info.threads];
  const repeats = options.repeats ?? 9;
  const batches = options.quick ? [8] : [1, 8];
  const shapes = options.quick ? VIT_SHAPES.slice(0, 1) : VIT_SHAPES;
  const records: BenchRecord[] = [];
  // Each path's micro-kernel alone first: the ceiling of the GEMM rates below on one thread.
  const prefetchesNextBlock = new Map<CpuPath, boolean>();
  for (const isa of isas) {
    const micro = await benchAddon().timeMicroKernel({ isa });
    prefetchesNextBlock.set(isa, micro.prefetchesNextBlock);
    for (const [a, gflops] of [['A packed', micro.packedGflops], ['A in place', micro.directGflops]] as const) {
      records.push({ kind: `micro-kernel, ${a}`, isa, threads: 1, M: micro.mr, K: micro.kc, N: micro.nr, prefetchesB: micro.prefetchesB, gflops });
    }
  }
  // The repetitions of one path and thread count run in interleaved rounds over its shapes, so
  // that a burst of another virtual machine's work on the host lowers a few repetitions of every
  // shape rather than all of one shape's.
  const rounds = Math.min(ROUNDS, repeats);
  for (const isa of isas) {
    for (const threads of [...new Set(threadCounts)]) {
      setThreads(threads);
      const cases = batches.flatMap((batch) =>
        shapes.flatMap(([K, N]) => (options.packing ?? B_PACKINGS).map((packing) => ({ M: 197 * batch, K, N, batch, packing, times: [] as number[] }))),
      );
      for (let round = 0; round < rounds; round++) {
        const perRound = Math.ceil((repeats * (round + 1)) / rounds) - Math.ceil((repeats * round) / rounds);
        for (const c of cases) {
          const bCopies = c.packing === 'cold' ? Math.min(256, Math.max(perRound + 1, Math.ceil(COLD_B_BYTES / (4 * c.K * c.N)))) : 1;
          c.times.push(...(await benchAddon().timeGemm({ M: c.M, N: c.N, K: c.K, transB: true, threads, repeats: perRound, packedB: c.packing !== 'call', bCopies }, isa)));
        }
      }
      for (const { M, K, N, batch, packing, times } of cases) {
        const s = stats(times);
        const flops = 2 * M * N * K;
        records.push({
          kind: 'gemm',
          isa,
          threads,
          batch,
          M,
          K,
          N,
          bPacked: packing,
          prefetchesNextBlock: packing === 'call' ? undefined : prefetchesNextBlock.get(isa),
          ...s,
          flops,
          gflops: flops / (s.medianMs * 1e6),
        });
      }
    }
  }
  setThreads(info.threads);
  return records;
}
