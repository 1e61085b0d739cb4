// `bench attention`: softmax (flash-style) against linear-angular attention (castling, inference
// form) at growing token counts, H = 6, d = 64, batch 1: median forward and forward+backward
// latency, counted FLOPs (and MACs, the paper's metric), GFLOP/s, peak extra memory, and the
// speed-up of linear-angular over softmax.
import { Tensor, attention } from '../lib/index.js';
import { native } from '../lib/native.js';
import { runAsync } from '../lib/ops.js';
import { attentionFlops } from '../lib/flops.js';
import { stats, type BenchRecord } from './common.js';

export interface AttentionBenchOptions {
  tokens?: number[];
  /** Sparsifiner keep rates to measure (none: skip the kind). */
  keepRates?: number[];
  /** Sparsifiner coefficient top-k settings measured at each keep rate (0: all r coefficients). */
  coefficientKeeps?: number[];
  /** Largest token count at which Sparsifiner is measured (its predictor is quadratic too). */
  sparsifinerMaxTokens?: number;
  heads?: number;
  headDim?: number;
  kernel?: number;
  repeats?: number;
  backward?: boolean;
  log?: (line: string) => void;
}

function randomTensor(shape: number[], seed: number): Tensor {
  const n = shape.reduce((a, b) => a * b, 1);
  const data = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = (s / 2 ** 32) * 2 - 1;
  }
  return Tensor.fromArray(data, shape);
}

async function timed<T>(fn: () => Promise<T>, dispose: (value: T) => void, repeats: number): Promise<{ times: number[]; peakExtra: number }> {
  dispose(await fn()); // warm-up
  const times: number[] = [];
  let peakExtra = 0;
  for (let r = 0; r < repeats; r++) {
    native.memoryStats(true); // start a new peak at what is live now (the inputs)
    const start = performance.now();
    const value = await fn();
    times.push(performance.now() - start);
    const { liveBytes, peakBytes } = native.memoryStats();
    // Extra = the peak beyond the inputs (live before) and the outputs (still live now).
    peakExtra = Math.max(peakExtra, peakBytes - liveBytes);
    dispose(value);
  }
  return { times, peakExtra };
}

/** Sparsifiner at one keep rate: the predictor (random weights) and the sparse attention. */
async function benchSparsifiner(q: Tensor, k: Tensor, v: Tensor, dy: Tensor, keepRate: number, coefficientKeep: number, repeats: number, backward: boolean, log: (line: string) => void): Promise<BenchRecord[]> {
  const [, H, N, d] = q.shape as [number, number, number, number];
  const r = Math.max(1, Math.floor(N / 8));
  const weights = [randomTensor([d / 2, d], 11), randomTensor([d / 2], 12), randomTensor([d / 2, d], 13), randomTensor([d / 2], 14), randomTensor([N, r], 15), randomTensor([N, r], 16)];
  const predictorNames = ['q', 'k', 'Wq', 'bq', 'Wk', 'bk', 'P', 'Bb'];
  const forward = async () => {
    const [indices, ...rest] = await runAsync('sparsifinerPredict', predictorNames, [q, k, ...weights], { keepRate, coefficientKeep });
    rest.forEach((t) => t.dispose());
    const [y, lse] = await runAsync('sparseAttention', ['q', 'k', 'v', 'indices'], [q, k, v, indices!]);
    return { y: y!, lse: lse!, indices: indices! };
  };
  const dispose = (x: { y: Tensor; lse: Tensor; indices: Tensor }) => [x.y, x.lse, x.indices].forEach((t) => t.dispose());
  const records: BenchRecord[] = [];
  const f = await timed(forward, dispose, repeats);
  const fs = stats(f.times);
  const flops = H * attentionFlops('sparsifiner', 'forward', N, d, { keepRate, coefficientKeep });
  records.push({ kind: 'sparsifiner', pass: 'forward', tokens: N, heads: H, headDim: d, batch: 1, keepRate, coefficientKeep, ...fs, flops, macs: flops / 2, gflops: flops / (fs.medianMs * 1e6), peakBytes: f.peakExtra, flopsWithoutProjections: H * attentionFlops('sparsifiner', 'forward', N, d, { keepRate, coefficientKeep, withProjections: false }) });
  log(`sparsifiner keep ${keepRate} coefficients ${coefficientKeep || 'all'} N=${N} forward ${fs.medianMs.toFixed(2)} ms`);
  if (backward) {
    const both = async () => {
      const x = await forward();
      const grads = await runAsync('sparseAttentionBackward', ['q', 'k', 'v', 'indices', 'y', 'lse', 'dy'], [q, k, v, x.indices, x.y, x.lse, dy]);
      dispose(x);
      return grads;
    };
    const b = await timed(both, (g) => g.forEach((t) => t.dispose()), Math.max(3, Math.ceil(repeats / 2)));
    const bs = stats(b.times);
    const flopsFb = flops + H * attentionFlops('sparsifiner', 'backward', N, d, { keepRate });
    records.push({ kind: 'sparsifiner', pass: 'forward+backward', tokens: N, heads: H, headDim: d, batch: 1, keepRate, coefficientKeep, ...bs, flops: flopsFb, macs: flopsFb / 2, gflops: flopsFb / (bs.medianMs * 1e6), peakBytes: b.peakExtra });
    log(`sparsifiner keep ${keepRate} coefficients ${coefficientKeep || 'all'} N=${N} forward+backward ${bs.medianMs.toFixed(2)} ms`);
  }
  weights.forEach((t) => t.dispose());
  return records;
}

export async function benchAttention(o: AttentionBenchOptions = {}): Promise<BenchRecord[]> {
  const H = o.heads ?? 6;
  const d = o.headDim ?? 64;
  const K = o.kernel ?? 9;
  const log = o.log ?? (() => {});
  const records: BenchRecord[] = [];
  // The GEMM rate of this run (a ViT layer's shape, B transposed), the yardstick of the kernels.
  const threads = native.backendInfo().threads;
  const [M, Kg, Ng] = [1576, 384, 1152];
  const gemm = stats(await native.timeGemm({ M, N: Ng, K: Kg, transB: true, threads, repeats: 21 }));
  const gemmRate = (2 * M * Ng * Kg) / (gemm.medianMs * 1e6);
  records.push({ kind: 'gemm', M, K: Kg, N: Ng, threads, ...gemm, gflops: gemmRate });
  log(`GEMM ${M}x${Kg}x${Ng}: ${gemmRate.toFixed(1)} GFLOP/s`);
  for (const N of o.tokens ?? [197, 785, 3137, 12545]) {
    const shape = [1, H, N, d];
    const [q, k, v, dy] = [1, 2, 3, 4].map((s) => randomTensor(shape, s * N)) as [Tensor, Tensor, Tensor, Tensor];
    const w = randomTensor([H, K], 5);
    const repeats = o.repeats ?? (N > 4000 ? 3 : 7);
    const forwardMs: Record<string, number> = {};
    for (const kind of ['softmax', 'castling'] as const) {
      const forward = kind === 'softmax' ? () => attention.softmax(q, k, v) : () => attention.linearAngular(q, k, v, w);
      const disposeForward = (r: { y: Tensor; lse?: Tensor; saved?: Tensor[] }) => {
        r.y.dispose();
        r.lse?.dispose();
        r.saved?.forEach((t) => t.dispose());
      };
      const f = await timed(forward, disposeForward, repeats);
      const fs = stats(f.times);
      forwardMs[kind] = fs.medianMs;
      const flops = H * attentionFlops(kind, 'forward', N, d, { kernel: K });
      records.push({ kind, pass: 'forward', tokens: N, heads: H, headDim: d, batch: 1, ...fs, flops, macs: flops / 2, gflops: flops / (fs.medianMs * 1e6), peakBytes: f.peakExtra });
      log(`${kind} N=${N} forward ${fs.medianMs.toFixed(2)} ms`);
      if (o.backward !== false) {
        const both = async () => {
          const r = await forward();
          const g =
            kind === 'softmax'
              ? await attention.softmaxBackward(q, k, v, r as attention.SoftmaxAttentionResult, dy)
              : await attention.linearAngularBackward(q, k, v, w, r as attention.LinearAngularResult, dy);
          disposeForward(r as { y: Tensor });
          return g;
        };
        const b = await timed(both, (g) => Object.values(g).forEach((t) => (t as Tensor).dispose()), Math.max(3, Math.ceil(repeats / 2)));
        const bs = stats(b.times);
        const flopsFb = flops + H * attentionFlops(kind, 'backward', N, d, { kernel: K });
        records.push({ kind, pass: 'forward+backward', tokens: N, heads: H, headDim: d, batch: 1, ...bs, flops: flopsFb, macs: flopsFb / 2, gflops: flopsFb / (bs.medianMs * 1e6), peakBytes: b.peakExtra });
        log(`${kind} N=${N} forward+backward ${bs.medianMs.toFixed(2)} ms`);
      }
    }
    if (N <= (o.sparsifinerMaxTokens ?? 3137)) {
      for (const keepRate of o.keepRates ?? [0.1, 0.25, 0.5]) {
        for (const coefficientKeep of o.coefficientKeeps ?? [0, 4]) {
          records.push(...(await benchSparsifiner(q, k, v, dy, keepRate, coefficientKeep, repeats, o.backward !== false, log)));
        }
      }
    }
    for (const r of records) {
      if (r.tokens === N && typeof r.gflops === 'number') r.shareOfGemmRate = r.gflops / gemmRate;
      if (r.tokens === N && r.kind !== 'softmax' && r.pass === 'forward') r.speedupOverSoftmax = forwardMs.softmax! / Number(r.medianMs);
      if (r.tokens === N && r.kind === 'sparsifiner' && r.pass === 'forward') r.flopsSavedVsSoftmax = 1 - Number(r.flops) / (H * attentionFlops('softmax', 'forward', N, d));
    }
    for (const t of [q, k, v, dy, w]) t.dispose();
  }
  return records;
}
