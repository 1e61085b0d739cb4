// `bench attention`: softmax (flash-style) against linear-angular attention (castling, inference
// form) and Sparsifiner (predictor + sparse attention, at several keep rates) at growing token
// counts, H = 6, d = 64, batch 1: median forward and forward+backward latency, counted FLOPs (and
// MACs, the paper's metric), GFLOP/s, peak extra memory, and the speed-up over softmax. All cases
// of a token count are timed in interleaved rounds, so that their ratios are taken side by side.
import { Tensor } from '../lib/index.js';
import { attention } from '../lib/entry/ops.js';
import { native } from '../lib/native.js';
import { runAsync } from '../lib/ops.js';
import { attentionFlops } from '../lib/flops.js';
import { benchAddon } from './bench_addon.js';
import { collectGarbage, stats, type BenchRecord } from './common.js';

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

/**
 * One measured case: a pass of one attention kind. `run` returns what `dispose` frees; `flops` is
 * the counted work of one run. The record's fields (kind, pass, keepRate, ...) go in `fields`.
 */
interface Case {
  label: string;
  fields: BenchRecord;
  flops: number;
  run: () => Promise<Tensor[]>;
  times: number[];
  peakExtra: number;
}

/** Cases shorter than this run once untimed right before each timed run. */
const SHORT_CASE_MS = 250;

/**
 * Times every case `repeats` times in interleaved rounds (each round runs every case once, after
 * one untimed warm-up each), so that the ratios between kinds are taken side by side: these VMs'
 * speed drifts by tens of percent within minutes. Each timed run starts from a collected heap
 * (collectGarbage), and a short case is run once untimed just before: what the previous case left
 * behind (its garbage, the pool's threads gone to sleep during a collection) would otherwise cost
 * a 9 ms kernel several milliseconds that are not its own. Peak memory is the peak beyond the
 * inputs (live before the call) and the outputs (still live after it).
 */
async function timeInRounds(cases: Case[], repeats: number): Promise<void> {
  const short = new Set<Case>();
  for (const c of cases) {
    const start = performance.now();
    (await c.run()).forEach((t) => t.dispose());
    if (performance.now() - start < SHORT_CASE_MS) short.add(c);
  }
  for (let r = 0; r < repeats; r++) {
    for (const c of cases) {
      collectGarbage();
      if (short.has(c)) (await c.run()).forEach((t) => t.dispose());
      native.memoryStats(true);
      const start = performance.now();
      const outputs = await c.run();
      c.times.push(performance.now() - start);
      const { liveBytes, peakBytes } = native.memoryStats();
      c.peakExtra = Math.max(c.peakExtra, peakBytes - liveBytes);
      outputs.forEach((t) => t.dispose());
    }
  }
}

function newCase(label: string, fields: BenchRecord, flops: number, run: () => Promise<Tensor[]>): Case {
  return { label, fields, flops, run, times: [], peakExtra: 0 };
}

const PREDICTOR_INPUTS = ['q', 'k', 'Wq', 'bq', 'Wk', 'bk', 'P', 'Bb'];

/** Sparsifiner at one keep rate: the predictor (random weights) and the sparse attention. */
function sparsifinerCases(q: Tensor, k: Tensor, v: Tensor, dy: Tensor, weights: Tensor[], keepRate: number, coefficientKeep: number, backward: boolean): Case[] {
  const [, H, N, d] = q.shape as [number, number, number, number];
  const forward = async () => {
    const [indices, ...rest] = await runAsync('sparsifinerPredict', PREDICTOR_INPUTS, [q, k, ...weights], { keepRate, coefficientKeep });
    rest.forEach((t) => t.dispose());
    const [y, lse] = await runAsync('sparseAttention', ['q', 'k', 'v', 'indices'], [q, k, v, indices!]);
    return [y!, lse!, indices!];
  };
  const label = `sparsifiner keep ${keepRate} coefficients ${coefficientKeep || 'all'} N=${N}`;
  const fields = { kind: 'sparsifiner', tokens: N, heads: H, headDim: d, batch: 1, keepRate, coefficientKeep };
  const flops = H * attentionFlops('sparsifiner', 'forward', N, d, { keepRate, coefficientKeep });
  const cases = [newCase(`${label} forward`, { ...fields, pass: 'forward', flopsWithoutProjections: H * attentionFlops('sparsifiner', 'forward', N, d, { keepRate, coefficientKeep, withProjections: false }) }, flops, forward)];
  if (keepRate === 0.25) {
    // The two halves alone, on the same inputs: what the predictor and the sparse attention each
    // cost against the softmax forward (their sum is the forward above, less one hand-over).
    const predictor = async () => runAsync('sparsifinerPredict', PREDICTOR_INPUTS, [q, k, ...weights], { keepRate, coefficientKeep });
    let kept: Tensor | null = null; // the predictor's indices, made on the first (warm-up) run
    const sparse = async () => {
      if (!kept) {
        const [indices, ...rest] = await predictor();
        rest.forEach((t) => t.dispose());
        kept = indices!;
      }
      return runAsync('sparseAttention', ['q', 'k', 'v', 'indices'], [q, k, v, kept]);
    };
    cases.push(newCase(`${label} predictor alone`, { ...fields, pass: 'predictor' }, 0, predictor));
    cases.push(newCase(`${label} sparse attention alone`, { ...fields, pass: 'sparse attention' }, 0, sparse));
    cases.push(thresholdCase(q, k, v, weights, keepRate, coefficientKeep, fields));
  }
  if (backward) {
    const both = async () => {
      const [y, lse, indices] = await forward();
      const grads = await runAsync('sparseAttentionBackward', ['q', 'k', 'v', 'indices', 'y', 'lse', 'dy'], [q, k, v, indices!, y!, lse!, dy]);
      [y!, lse!, indices!].forEach((t) => t.dispose());
      return grads;
    };
    cases.push(newCase(`${label} forward+backward`, { ...fields, pass: 'forward+backward' }, flops + H * attentionFlops('sparsifiner', 'backward', N, d, { keepRate }), both));
  }
  return cases;
}

/**
 * The release's threshold selection in place of the top-k, at the same average keep rate: on the
 * first (warm-up) run a bisection finds the threshold at which the predictor keeps that share of
 * the keys on these inputs (recorded as thresholdKeepRate); then the forward is timed with it.
 */
function thresholdCase(q: Tensor, k: Tensor, v: Tensor, weights: Tensor[], keepRate: number, coefficientKeep: number, fields: BenchRecord): Case {
  const [, H, N] = q.shape as [number, number, number, number];
  const predict = (threshold: number) => runAsync('sparsifinerPredict', PREDICTOR_INPUTS, [q, k, ...weights], { mode: 1, threshold, coefficientKeep });
  const keptShare = async (threshold: number) => {
    const [indices, ...rest] = await predict(threshold);
    rest.forEach((t) => t.dispose());
    const slots = indices!.toFloat32Array();
    indices!.dispose();
    return slots.reduce((n, x) => n + (x >= 0 ? 1 : 0), 0) / (H * (N - 1) * N); // row 0 is dense, all -1
  };
  const c = newCase(`sparsifiner threshold (keeps ~${keepRate}) coefficients ${coefficientKeep || 'all'} N=${N} forward`, { ...fields, keySelection: 'threshold', pass: 'threshold forward' }, 0, async () => {
    if (c.fields.threshold === undefined) {
      let [low, high] = [-100, 100]; // the predicted attention is a convex mix of basis rows
      for (let i = 0; i < 40; i++) {
        const mid = (low + high) / 2;
        if ((await keptShare(mid)) > keepRate) low = mid;
        else high = mid;
      }
      c.fields.threshold = high;
      c.fields.thresholdKeepRate = await keptShare(high);
    }
    const [indices, ...rest] = await predict(Number(c.fields.threshold));
    rest.forEach((t) => t.dispose());
    const [y, lse] = await runAsync('sparseAttention', ['q', 'k', 'v', 'indices'], [q, k, v, indices!]);
    return [y!, lse!, indices!];
  });
  return c;
}

/** Softmax (flash) or linear-angular (castling, inference form) attention: forward, and forward+backward. */
function denseCases(kind: 'softmax' | 'castling', q: Tensor, k: Tensor, v: Tensor, dy: Tensor, w: Tensor, K: number, backward: boolean): Case[] {
  const [, H, N, d] = q.shape as [number, number, number, number];
  const forward = kind === 'softmax' ? () => attention.softmax(q, k, v) : () => attention.linearAngular(q, k, v, w);
  const outputs = (r: { y: Tensor; lse?: Tensor; saved?: Tensor[] }) => [r.y, ...(r.lse ? [r.lse] : []), ...(r.saved ?? [])];
  const fields = { kind, tokens: N, heads: H, headDim: d, batch: 1 };
  const flops = H * attentionFlops(kind, 'forward', N, d, { kernel: K });
  const cases = [newCase(`${kind} N=${N} forward`, { ...fields, pass: 'forward' }, flops, async () => outputs(await forward()))];
  if (backward) {
    const both = async () => {
      const r = await forward();
      const g =
        kind === 'softmax'
          ? await attention.softmaxBackward(q, k, v, r as attention.SoftmaxAttentionResult, dy)
          : await attention.linearAngularBackward(q, k, v, w, r as attention.LinearAngularResult, dy);
      outputs(r).forEach((t) => t.dispose());
      return Object.values(g) as Tensor[];
    };
    cases.push(newCase(`${kind} N=${N} forward+backward`, { ...fields, pass: 'forward+backward' }, flops + H * attentionFlops(kind, 'backward', N, d, { kernel: K }), both));
    if (kind === 'castling') cases.push(auxiliaryBranchCase(q, k, v, dy, w, fields));
  }
  return cases;
}

/** Where training starts the auxiliary branch's threshold (EARLY_CASTLING's tau0). */
const AUX_TAU = 0.02;

/**
 * Castling's training form: linear-angular forward+backward with the auxiliary masked softmax
 * branch at the schedule's first threshold. Its FLOPs depend on how many probabilities pass the
 * mask, so none are counted; what it reports is the branch's cost (this case less the plain
 * castling forward+backward) against flash softmax attention's forward+backward.
 */
function auxiliaryBranchCase(q: Tensor, k: Tensor, v: Tensor, dy: Tensor, w: Tensor, fields: BenchRecord): Case {
  const options = { aux: { tau: AUX_TAU, l1: 1e-3 } };
  return newCase(`castling N=${fields.tokens} forward+backward, auxiliary branch tau ${AUX_TAU}`, { ...fields, pass: 'forward+backward, auxiliary branch', auxTau: AUX_TAU }, 0, async () => {
    const r = await attention.linearAngular(q, k, v, w, options);
    const g = await attention.linearAngularBackward(q, k, v, w, r, dy, options);
    [r.y, ...r.saved].forEach((t) => t.dispose());
    return Object.values(g) as Tensor[];
  });
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
  const gemm = stats(await benchAddon().timeGemm({ M, N: Ng, K: Kg, transB: true, threads, repeats: 21 }));
  const gemmRate = (2 * M * Ng * Kg) / (gemm.medianMs * 1e6);
  records.push({ kind: 'gemm', M, K: Kg, N: Ng, threads, ...gemm, gflops: gemmRate });
  log(`GEMM ${M}x${Kg}x${Ng}: ${gemmRate.toFixed(1)} GFLOP/s`);
  for (const N of o.tokens ?? [197, 785, 3137, 12545]) {
    const shape = [1, H, N, d];
    const [q, k, v, dy] = [1, 2, 3, 4].map((s) => randomTensor(shape, s * N)) as [Tensor, Tensor, Tensor, Tensor];
    const w = randomTensor([H, K], 5);
    const r = Math.max(1, Math.floor(N / 8));
    const weights = [randomTensor([d / 2, d], 11), randomTensor([d / 2], 12), randomTensor([d / 2, d], 13), randomTensor([d / 2], 14), randomTensor([N, r], 15), randomTensor([N, r], 16)];
    const backward = o.backward !== false;
    const cases = [...denseCases('softmax', q, k, v, dy, w, K, backward), ...denseCases('castling', q, k, v, dy, w, K, backward)];
    if (N <= (o.sparsifinerMaxTokens ?? 3137)) {
      for (const keepRate of o.keepRates ?? [0.1, 0.25, 0.5]) {
        for (const coefficientKeep of o.coefficientKeeps ?? [0, 4]) cases.push(...sparsifinerCases(q, k, v, dy, weights, keepRate, coefficientKeep, backward));
      }
    }
    await timeInRounds(cases, o.repeats ?? (N > 4000 ? 3 : 7));
    const softmaxForwardMs = stats(cases[0]!.times).medianMs;
    const medianOf = (kind: string, pass: string) => {
      const c = cases.find((x) => x.fields.kind === kind && x.fields.pass === pass);
      return c ? stats(c.times).medianMs : Number.NaN;
    };
    for (const c of cases) {
      const st = stats(c.times);
      const rec: BenchRecord = { ...c.fields, ...st, flops: c.flops, macs: c.flops / 2, gflops: c.flops / (st.medianMs * 1e6), peakBytes: c.peakExtra };
      rec.shareOfGemmRate = Number(rec.gflops) / gemmRate;
      if (rec.kind !== 'softmax' && rec.pass === 'forward') rec.speedupOverSoftmax = softmaxForwardMs / st.medianMs;
      if (rec.pass === 'predictor' || rec.pass === 'sparse attention' || rec.pass === 'threshold forward') rec.shareOfSoftmaxForward = st.medianMs / softmaxForwardMs;
      if (rec.pass === 'forward+backward, auxiliary branch') {
        rec.auxBranchOverSoftmaxForwardBackward = (st.medianMs - medianOf('castling', 'forward+backward')) / medianOf('softmax', 'forward+backward');
      }
      if (rec.kind === 'sparsifiner' && rec.pass === 'forward') rec.flopsSavedVsSoftmax = 1 - c.flops / (H * attentionFlops('softmax', 'forward', N, d));
      records.push(rec);
      log(`${c.label} ${st.medianMs.toFixed(2)} ms`);
    }
    for (const t of [q, k, v, dy, w, ...weights]) t.dispose();
  }
  return records;
}
