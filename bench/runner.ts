// The one benchmark runner, behind `npm run bench -- <name> [--json FILE] [options]` in this
// repository (bench/run.ts) and `castling-vit bench <name> ...` where the package is installed.
// Each benchmark prints a table and, with --json, writes its records in the shared flat JSON shape.
import { parseArgs } from 'node:util';

import { commit, machine, printTable, writeJsonAtomic, type BenchRecord } from './common.js';
import { machineName, readCpuId } from './machine_name.js';
import { B_PACKINGS, benchGemm, type BPacking } from './gemm.js';
import { benchModel } from './model.js';
import { benchAttention } from './attention.js';
import { benchOnnx, type OnnxKind } from './onnx.js';
import { benchImages } from './images.js';
import { benchServe } from './serve.js';
import { benchCuda } from './cuda.js';
import { benchScaling } from './scaling.js';
import { addShareOfPeak, peakBeforeRun } from './share_of_peak.js';
import type { AttentionKind, CpuPath } from '../lib/index.js';

/** How the runner was started: its command (for the usage line), and whether from the repository. */
export interface BenchContext {
  command: string;
  /**
   * In the repository, runs keep their outputs in bench/ unless told otherwise (the attention
   * chart, the onnx results); elsewhere only --json and --chart write files.
   */
  repository: boolean;
}

interface Bench {
  describe: string;
  /** The table's columns: with `shareOfPeak` among them, the run reads the CPU's FMA peak for it. */
  columns: string[];
  run(options: Record<string, string | boolean | undefined>, context: BenchContext): Promise<BenchRecord[]>;
  /**
   * Where the JSON goes without --json: bench/results/, named by benchmark and machine, so that a
   * new run on the same machine replaces the figures it supersedes.
   */
  defaultJson?: () => string;
}

const list = (value: unknown) => (typeof value === 'string' ? value.split(',').map((s) => s.trim()).filter(Boolean) : undefined);
const numbers = (value: unknown) => list(value)?.map((s) => {
  const n = Number(s);
  if (!Number.isInteger(n) || n < 1) throw new Error(`expected positive integers, got '${s}'`);
  return n;
});

/** A count that may be 0 (--uploads 0 skips a phase). */
const count = (value: unknown) => {
  if (typeof value !== 'string') return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new Error(`expected an integer, 0 or more, got '${value}'`);
  return n;
};

const bPackings = (value: unknown) => list(value)?.map((s) => {
  if (!(B_PACKINGS as string[]).includes(s)) throw new Error(`--packing: expected ${B_PACKINGS.join(', ')}, got '${s}'`);
  return s as BPacking;
});

const percent = (value: unknown) => {
  if (typeof value !== 'string') return undefined;
  const n = Number(value);
  if (!(n >= 0 && n <= 100)) throw new Error(`expected a percentage from 0 to 100, got '${value}'`);
  return n;
};

const benches: Record<string, Bench> = {
  gemm: {
    describe: 'SGEMM GFLOP/s per CPU path and thread count at ViT shapes, B packed on every call, once beforehand as a linear layer\'s weight, and once but cold (each call another copy, as a pass reads its weights from memory), after each path\'s micro-kernel alone on panels in cache (--isa avx512,avx2 --threads 1,2 --packing call,once,cold --repeats N --quick)',
    columns: ['kind', 'isa', 'threads', 'M', 'K', 'N', 'bPacked', 'prefetchesB', 'prefetchesNextBlock', 'medianMs', 'minMs', 'gflops', 'shareOfPeak'],
    run: (o) =>
      benchGemm({
        isas: list(o.isa) as CpuPath[] | undefined,
        threads: numbers(o.threads),
        packing: bPackings(o.packing),
        repeats: numbers(o.repeats)?.[0],
        quick: o.quick === true,
      }),
  },
  attention: {
    describe: 'softmax vs linear-angular (and Sparsifiner) attention, N in 197..12545, H=6, d=64: latency, FLOPs, GFLOP/s, peak memory, speed-up, chart (--chart FILE, --tokens, --quick)',
    columns: ['kind', 'keepRate', 'coefficientKeep', 'pass', 'tokens', 'medianMs', 'flops', 'gflops', 'shareOfPeak', 'shareOfGemmRate', 'peakBytes', 'speedupOverSoftmax', 'shareOfSoftmaxForward', 'flopsSavedVsSoftmax', 'auxBranchOverSoftmaxForwardBackward'],
    run: async (o, context) => {
      const chart = typeof o.chart === 'string' ? o.chart : context.repository ? 'bench/out/attention.svg' : undefined;
      const writeLineChart = chart ? await chartWriter() : null; // before the run: a missing Vega fails fast
      const records = await benchAttention({
        tokens: numbers(o.tokens) ?? (o.quick ? [197, 785] : undefined),
        repeats: numbers(o.repeats)?.[0],
        log: (line) => console.error(line),
      });
      if (!chart || !writeLineChart) return records;
      await writeLineChart(chart, {
        title: 'Attention latency vs tokens (H=6, d=64, batch 1)',
        x: { field: 'tokens', title: 'tokens', log: true },
        y: { field: 'medianMs', title: 'median latency (ms)', log: true },
        series: 'kind',
        values: records
          .filter((r) => r.kind !== 'gemm' && (r.pass === 'forward' || r.pass === 'forward+backward') && (r.kind !== 'sparsifiner' || r.keepRate === 0.25))
          .map((r) => ({ ...r, kind: r.kind === 'castling' ? 'linear-angular' : r.kind === 'sparsifiner' ? `sparsifiner (keep 0.25, ${r.coefficientKeep ? `top-${r.coefficientKeep} coefficients` : 'all coefficients'})` : 'softmax' })),
      });
      console.error(`chart: ${chart}`);
      return records;
    },
  },
  model: {
    describe: 'ViT images/s: predict (batch 1, 8) and trainStep (batch 32, in micro-batches whose activations fit --train-budget BYTES, default 12e9), deit-tiny/small x softmax/castling (sparsifiner with --kinds) x 224/448/896, predicts of the kinds interleaved, with the ratio to softmax (--models, --kinds, --images, --batches, --repeats, --quick: deit-tiny, 224)',
    columns: ['model', 'kind', 'image', 'tokens', 'pass', 'batch', 'microBatch', 'medianMs', 'imagesPerSecond', 'gflops', 'shareOfPeak', 'ratioToSoftmax', 'outsideKernels', 'peakBytes', 'skipped'],
    run: (o) =>
      benchModel({
        models: (list(o.models) as Array<'deitTiny' | 'deitSmall'> | undefined) ?? (o.quick ? ['deitTiny'] : undefined),
        images: numbers(o.images) ?? (o.quick ? [224] : undefined),
        attentions: list(o.kinds) as AttentionKind[] | undefined,
        predictBatches: numbers(o.batches),
        memoryBudget: typeof o['train-budget'] === 'string' ? Number(o['train-budget']) : undefined,
        repeats: numbers(o.repeats)?.[0],
        log: (line) => console.error(line),
      }),
  },
  scaling: {
    describe: 'thread scaling beyond this machine: DeiT-S predict (and --train: a castling trainStep) traced with the pool at --threads 2,16,64 and scheduled on that many ideal cores: jobs per call, serial ms, work that did not split, share of the threads kept busy, the op losing most (--kinds, --batches 1,8, --images 224)',
    columns: ['workload', 'kind', 'batch', 'threads', 'jobs', 'workMs', 'serialMs', 'unsplitMs', 'modelMs', 'efficiency', 'mostLost'],
    run: (o) =>
      benchScaling({
        threads: numbers(o.threads),
        attentions: list(o.kinds) as AttentionKind[] | undefined,
        batches: numbers(o.batches),
        image: numbers(o.images)?.[0],
        train: o.train === true,
        log: (line) => console.error(line),
      }),
  },
  images: {
    describe: 'image files to classes: readImages (decode, resize, normalise) vs predict vs classify (both, chunk by chunk), JPEG 640x480 to 224, images/s (--models deitSmall --kinds castling,softmax --batches 1,8 --repeats)',
    columns: ['model', 'kind', 'batch', 'pass', 'files', 'medianMs', 'imagesPerSecond', 'ratioToSequential'],
    run: (o) =>
      benchImages({
        model: (list(o.models)?.[0] as 'deitTiny' | 'deitSmall' | undefined) ?? (o.quick ? 'deitTiny' : undefined),
        attentions: list(o.kinds) as AttentionKind[] | undefined,
        batches: numbers(o.batches),
        repeats: numbers(o.repeats)?.[0] ?? (o.quick ? 2 : undefined),
        log: (line) => console.error(line),
      }),
  },
  serve: {
    describe: 'a service\'s load, one image per request: bursts of concurrent requests answered by model.predict each vs model.batcher(), interleaved rounds, images/s and request latency (median, p95) (--models, --kinds softmax,castling, --requests 1,8,32, --max-batch 16, --rounds 5, --quick: deit-tiny; --http: 640x480 JPEGs POSTed to serveModel, a burst at once vs one at a time; --load: a steady load on a server in a child process for --seconds 15 from --connections 16 clients, then --uploads 150 bodies of 31 MB at once: requests/s, latency p50/p90/p99, the server\'s peak RSS and its RSS after a quiet pause and after a garbage collection; default deit-tiny softmax)',
    columns: ['model', 'kind', 'requests', 'pass', 'medianMs', 'imagesPerSecond', 'latencyMedianMs', 'latencyP95Ms', 'speedupOverPredict', 'speedupOverSequential', 'clients', 'requestsPerSecond', 'latencyP50Ms', 'latencyP90Ms', 'latencyP99Ms', 'non200', 'refused503', 'baselineRssMB', 'peakRssMB', 'settledRssMB', 'collectedRssMB'],
    run: (o) =>
      benchServe({
        models: (list(o.models) as Array<'deitTiny' | 'deitSmall'> | undefined) ?? (o.quick ? ['deitTiny'] : undefined),
        attentions: list(o.kinds) as AttentionKind[] | undefined,
        requests: numbers(o.requests) ?? (o.quick ? [8] : undefined),
        maxBatch: numbers(o['max-batch'])?.[0],
        rounds: numbers(o.rounds)?.[0] ?? (o.quick ? 2 : undefined),
        http: o.http === true,
        load: o.load === true ? { seconds: numbers(o.seconds)?.[0], connections: numbers(o.connections)?.[0], uploads: count(o.uploads) } : undefined,
        log: (line) => console.error(line),
      }),
  },
  cuda: {
    describe: "device 'cuda' (a GPU): attention kinds at N up to 16384 (H=6, d=64) and DeiT-S/B predict and trainStep images/s at 224/448/896, every time up to synchronizeCuda(); --torch FILE adds PyTorch's figures from bench/cuda_torch.py on the same GPU (ratioToTorch) (--tokens --models deitSmall,deitBase --images --batches --train-batch --repeats --quick)",
    columns: ['section', 'model', 'image', 'kind', 'pass', 'tokens', 'batch', 'medianMs', 'gflops', 'imagesPerSecond', 'ratioToSoftmaxForward', 'torchMs', 'ratioToTorch', 'skipped'],
    run: (o) =>
      benchCuda({
        tokens: numbers(o.tokens) ?? (o.quick ? [197, 785] : undefined),
        models: (list(o.models) as Array<'deitSmall' | 'deitBase'> | undefined) ?? (o.quick ? ['deitSmall'] : undefined),
        images: numbers(o.images) ?? (o.quick ? [224] : undefined),
        predictBatches: numbers(o.batches) ?? (o.quick ? [1] : undefined),
        trainBatch: numbers(o['train-batch'])?.[0] ?? (o.quick ? 2 : undefined),
        repeats: numbers(o.repeats)?.[0] ?? (o.quick ? 2 : undefined),
        torch: typeof o.torch === 'string' ? o.torch : undefined,
        log: (line) => console.error(line),
      }),
  },
  onnx: {
    describe: 'castling-vit vs onnxruntime-node on the same weights and graph: logits check, interleaved timing, ratio ours/ORT, ORT fusions; --kinds mlp: the matrix products of the MLP layers alone, no bias or activation (--kinds softmax,castling,castling-spatial,mlp --images --batches --models deitSmall --rounds --seconds --quiet PCT --profile --quick); needs `npm install --no-save --ignore-scripts onnxruntime-node`',
    columns: ['model', 'kind', 'image', 'tokens', 'batch', 'runtime', 'medianMs', 'minMs', 'maxMs', 'gflops', 'shareOfPeak', 'afterIdleMs', 'rounds', 'ratioOursOverOrt', 'relError', 'cpuPressure', 'skipped'],
    run: (o) =>
      benchOnnx({
        model: (list(o.models)?.[0] as 'deitTiny' | 'deitSmall' | undefined) ?? 'deitSmall',
        kinds: list(o.kinds) as OnnxKind[] | undefined,
        images: numbers(o.images) ?? (o.quick ? [224] : undefined),
        batches: numbers(o.batches) ?? (o.quick ? [1] : undefined),
        threads: numbers(o.threads)?.[0],
        rounds: numbers(o.rounds)?.[0],
        seconds: numbers(o.seconds)?.[0] ?? (o.quick ? 3 : undefined),
        profile: o.profile === true,
        quietBelow: percent(o.quiet),
        log: (line) => console.error(line),
      }),
    defaultJson: () => `bench/results/onnx-${machineName(machine().cpu, readCpuId())}.json`,
  },
};

/** The chart writer, loaded only for a chart: Vega is a dev dependency, absent from installs of the package. */
async function chartWriter(): Promise<typeof import('./chart.js').writeLineChart> {
  try {
    return (await import('./chart.js')).writeLineChart;
  } catch (error) {
    if ((error as { code?: string }).code !== 'ERR_MODULE_NOT_FOUND') throw error;
    throw new Error(`--chart needs vega and vega-lite (development dependencies of castling-vit): npm install vega vega-lite (${(error as Error).message})`);
  }
}

function usage(context: BenchContext): string {
  const names = Object.entries(benches).map(([name, b]) => `  ${name.padEnd(10)} ${b.describe}`);
  return `usage: ${context.command} <name> [--json FILE]\n\nbenchmarks:\n${names.join('\n')}`;
}

/** Runs the benchmark named by args[0] with the options after it; resolves to the exit code. */
export async function runBenchmarks(args: string[], context: BenchContext): Promise<number> {
  const { positionals, values } = parseArgs({
    args,
    allowPositionals: true,
    options: {
      json: { type: 'string' },
      isa: { type: 'string' },
      threads: { type: 'string' },
      repeats: { type: 'string' },
      packing: { type: 'string' },
      quick: { type: 'boolean' },
      tokens: { type: 'string' },
      chart: { type: 'string' },
      models: { type: 'string' },
      images: { type: 'string' },
      batches: { type: 'string' },
      'train-budget': { type: 'string' },
      'train-batch': { type: 'string' },
      torch: { type: 'string' },
      kinds: { type: 'string' },
      requests: { type: 'string' },
      'max-batch': { type: 'string' },
      http: { type: 'boolean' },
      load: { type: 'boolean' },
      connections: { type: 'string' },
      uploads: { type: 'string' },
      rounds: { type: 'string' },
      seconds: { type: 'string' },
      profile: { type: 'boolean' },
      train: { type: 'boolean' },
      quiet: { type: 'string' },
      help: { type: 'boolean' },
    },
  });
  const name = positionals[0];
  if (!name || values.help) {
    console.log(usage(context));
    return name || values.help ? 0 : 2;
  }
  const bench = benches[name];
  if (!bench) {
    console.error(`unknown benchmark '${name}'\n\n${usage(context)}`);
    return 2;
  }
  const m = machine();
  console.log(`${name} on ${m.cpu}, ${m.threads} threads, node ${m.node}`);
  // Only benchmarks that show a share of the CPU's peak read it (a GPU's GFLOP/s have none).
  const readsPeak = bench.columns.includes('shareOfPeak');
  const before = readsPeak ? await peakBeforeRun() : undefined;
  const results = await bench.run(values, context);
  const peaks = readsPeak ? await addShareOfPeak(results, (line) => console.error(line), before) : [];
  printTable(results, bench.columns);
  for (const p of peaks) {
    const readings = p.beforeGflops === undefined ? 'measured after the run' : `the larger of its readings before (${p.beforeGflops.toFixed(1)}) and after the run (${p.afterGflops.toFixed(1)})`;
    console.log(`FMA peak, ${readings}: ${p.isa} on ${p.threads} thread${p.threads === 1 ? '' : 's'}, ${p.gflops.toFixed(1)} GFLOP/s`);
  }
  // A skipped run (say, onnxruntime-node not installed) leaves bench/results/ alone.
  const json = values.json ?? (context.repository && results.some((r) => !r.skipped) ? bench.defaultJson?.() : undefined);
  if (json) {
    writeJsonAtomic(json, { bench: name, machine: { ...m, fmaPeaks: peaks }, commit: commit(), results });
    console.log(`wrote ${json}`);
  }
  return 0;
}
