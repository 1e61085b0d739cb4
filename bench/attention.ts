// `bench attention`: softmax (flash-style) against linear-angular attention (castling, inference
// form) at growing token counts, H = 6, d = 64, batch 1: median forward and forward+backward
// latency, counted FLOPs (and MACs, the paper's metric), GFLOP/s, peak extra memory, and the
// speed-up of linear-angular over softmax.
import { Tensor, attention } from '../lib/index.js';
import { native } from '../lib/native.js';
import { stats, type BenchRecord } from './common.js';

export interface AttentionBenchOptions {
  tokens?: number[];
  heads?: number;
  headDim?: number;
  kernel?: number;
  repeats?: number;
  backward?: boolean;
  log?: (line: string) => void;
}

/** FLOPs per head. Softmax: q kᵀ and A v (2 N² d each); its backward recomputes the scores and
 * forms dV, dP, dQ, dK (10 N² d). Linear-angular: S = k̂ᵀ v and q̂ S (2 N d² each) plus the
 * K-tap convolution (2 N d K); its backward doubles each. Normalisations and exp are not counted. */
export function attentionFlops(kind: 'softmax' | 'castling', pass: 'forward' | 'backward', N: number, d: number, K: number): number {
  if (kind === 'softmax') return (pass === 'forward' ? 4 : 10) * N * N * d;
  return (pass === 'forward' ? 1 : 2) * (4 * N * d * d + 2 * N * d * K);
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

export async function benchAttention(o: AttentionBenchOptions = {}): Promise<BenchRecord[]> {
  const H = o.heads ?? 6;
  const d = o.headDim ?? 64;
  const K = o.kernel ?? 9;
  const log = o.log ?? (() => {});
  const records: BenchRecord[] = [];
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
      const flops = H * attentionFlops(kind, 'forward', N, d, K);
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
        const flopsFb = flops + H * attentionFlops(kind, 'backward', N, d, K);
        records.push({ kind, pass: 'forward+backward', tokens: N, heads: H, headDim: d, batch: 1, ...bs, flops: flopsFb, macs: flopsFb / 2, gflops: flopsFb / (bs.medianMs * 1e6), peakBytes: b.peakExtra });
        log(`${kind} N=${N} forward+backward ${bs.medianMs.toFixed(2)} ms`);
      }
    }
    for (const r of records) if (r.tokens === N && r.kind === 'castling' && r.pass === 'forward') r.speedupOverSoftmax = forwardMs.softmax! / forwardMs.castling!;
    for (const t of [q, k, v, dy, w]) t.dispose();
  }
  return records;
}
