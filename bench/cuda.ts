// `bench cuda`: the figures of device 'cuda' (a GPU; or the CUDA emulator, to check that the
// benchmark runs, with --quick): every attention kind against the token count up to 16,384
// (H = 6, d = 64, batch 1; forward, and forward+backward for softmax and linear-angular), and
// DeiT-S / DeiT-B predict and trainStep images/s at 224², 448² and 896². GPU work is asynchronous:
// every timing ends with synchronizeCuda(). Cases of one size run in interleaved rounds; medians.
// `--torch FILE` puts beside ours the figures of bench/cuda_torch.py (PyTorch on the same GPU,
// same shapes) as ratioToTorch (our time / PyTorch's: below 1 is faster).
import { readFileSync } from 'node:fs';

import { AdamW, Tensor, VisionTransformer, cudaAvailable, presets, synchronizeCuda, type AttentionKind } from '../lib/index.js';
import { attention } from '../lib/entry/ops.js';
import { runAsync } from '../lib/ops.js';
import { attentionFlops } from '../lib/flops.js';
import { randomImages, stats, type BenchRecord } from './common.js';

export interface CudaBenchOptions {
  tokens?: number[];
  models?: Array<'deitSmall' | 'deitBase'>;
  images?: number[];
  predictBatches?: number[];
  trainBatch?: number;
  repeats?: number;
  /** JSON written by bench/cuda_torch.py on the same machine. */
  torch?: string;
  log?: (line: string) => void;
}

const HEADS = 6;
const HEAD_DIM = 64;

function randomTensor(shape: number[], seed: number): Tensor {
  const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
  let s = seed;
  for (let i = 0; i < data.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    data[i] = (s / 2 ** 32) * 2 - 1;
  }
  return Tensor.fromArray(data, shape).to('cuda');
}

interface Case {
  fields: BenchRecord;
  flops: number;
  /** One run; returns what is freed after the clock stops. */
  run: () => Promise<Tensor[]>;
  times: number[];
}

/** Every case `repeats` times in interleaved rounds after one warm-up each, each time up to synchronizeCuda(). */
async function timeInRounds(cases: Case[], repeats: number): Promise<void> {
  for (const c of cases) (await c.run()).forEach((t) => t.dispose());
  synchronizeCuda();
  for (let r = 0; r < repeats; r++) {
    for (const c of cases) {
      const start = performance.now();
      const outputs = await c.run();
      synchronizeCuda();
      c.times.push(performance.now() - start);
      outputs.forEach((t) => t.dispose());
    }
  }
}

function attentionCases(n: number): { cases: Case[]; inputs: Tensor[] } {
  const shape = [1, HEADS, n, HEAD_DIM];
  const [q, k, v, dy] = [1, 2, 3, 4].map((seed) => randomTensor(shape, seed * n)) as [Tensor, Tensor, Tensor, Tensor];
  const dconv = randomTensor([HEADS, 3], 5);
  const half = HEAD_DIM / 2;
  const r = Math.max(1, Math.floor(n / 8));
  const predictor = [randomTensor([half, HEAD_DIM], 6), randomTensor([half], 7), randomTensor([half, HEAD_DIM], 8), randomTensor([half], 9), randomTensor([n, r], 10), randomTensor([n, r], 11)];
  const fields = { section: 'attention', tokens: n, heads: HEADS, headDim: HEAD_DIM, batch: 1 };
  const flops = (kind: 'softmax' | 'castling' | 'sparsifiner', pass: 'forward' | 'backward', keepRate?: number) => HEADS * attentionFlops(kind, pass, n, HEAD_DIM, keepRate === undefined ? {} : { keepRate });
  const softmaxForward = async () => {
    const out = await attention.softmax(q, k, v);
    return [out.y, out.lse];
  };
  const angularForward = async () => {
    const out = await attention.linearAngular(q, k, v, dconv);
    return [out.y, ...out.saved];
  };
  const cases: Case[] = [
    { fields: { ...fields, kind: 'softmax', pass: 'forward' }, flops: flops('softmax', 'forward'), run: softmaxForward, times: [] },
    {
      fields: { ...fields, kind: 'softmax', pass: 'forward+backward' },
      flops: flops('softmax', 'forward') + flops('softmax', 'backward'),
      run: async () => {
        const saved = await attention.softmax(q, k, v);
        const grads = await attention.softmaxBackward(q, k, v, saved, dy);
        return [saved.y, saved.lse, grads.dq, grads.dk, grads.dv];
      },
      times: [],
    },
    { fields: { ...fields, kind: 'castling', pass: 'forward' }, flops: flops('castling', 'forward'), run: angularForward, times: [] },
    {
      fields: { ...fields, kind: 'castling', pass: 'forward+backward' },
      flops: flops('castling', 'forward') + flops('castling', 'backward'),
      run: async () => {
        const saved = await attention.linearAngular(q, k, v, dconv);
        const grads = await attention.linearAngularBackward(q, k, v, dconv, saved, dy);
        return [saved.y, ...saved.saved, grads.dq, grads.dk, grads.dv, grads.dWeight];
      },
      times: [],
    },
    {
      fields: { ...fields, kind: 'sparsifiner', keepRate: 0.25, pass: 'forward' },
      flops: flops('sparsifiner', 'forward', 0.25),
      run: async () => {
        const [indices, ...rest] = await runAsync('sparsifinerPredict', ['q', 'k', 'Wq', 'bq', 'Wk', 'bk', 'P', 'Bb'], [q, k, ...predictor], { keepRate: 0.25 });
        const [y, lse] = await runAsync('sparseAttention', ['q', 'k', 'v', 'indices'], [q, k, v, indices!]);
        return [indices!, ...rest, y!, lse!];
      },
      times: [],
    },
  ];
  return { cases, inputs: [q, k, v, dy, dconv, ...predictor] };
}

async function benchAttentionOnCuda(tokens: number[], repeats: number, log: (line: string) => void): Promise<BenchRecord[]> {
  const records: BenchRecord[] = [];
  for (const n of tokens) {
    const { cases, inputs } = attentionCases(n);
    await timeInRounds(cases, repeats);
    const softmax = stats(cases[0]!.times).medianMs;
    for (const c of cases) {
      const { medianMs, minMs } = stats(c.times);
      records.push({ ...c.fields, medianMs, minMs, gflops: c.flops / medianMs / 1e6, ratioToSoftmaxForward: medianMs / softmax });
    }
    log(`attention N=${n}: softmax forward ${softmax.toFixed(3)} ms`);
    inputs.forEach((t) => t.dispose());
  }
  return records;
}

async function benchModelsOnCuda(options: Required<Pick<CudaBenchOptions, 'models' | 'images' | 'predictBatches' | 'trainBatch' | 'repeats'>>, log: (line: string) => void): Promise<BenchRecord[]> {
  const records: BenchRecord[] = [];
  const kinds: AttentionKind[] = ['softmax', 'castling', 'sparsifiner'];
  for (const name of options.models) {
    for (const image of options.images) {
      const models = new Map(kinds.map((attention) => [attention, VisionTransformer.create({ ...presets[name], imageSize: image, attention, device: 'cuda', seed: 1 })]));
      const trained: VisionTransformer[] = [];
      models.get('castling')!.castle(); // inference form
      const fields = { section: 'model', model: name, image, tokens: (image / 16) ** 2 + 1 };
      const cases: Case[] = [];
      const inputs: Tensor[] = [];
      for (const batch of options.predictBatches) {
        const images = randomImages(batch, image); // on the CPU: predict moves it to the device, and that copy is part of a call
        inputs.push(images);
        for (const [attention, model] of models) {
          cases.push({ fields: { ...fields, kind: attention, pass: 'predict', batch }, flops: 0, run: async () => [await model.predict(images)], times: [] });
        }
      }
      const trainImages = randomImages(options.trainBatch, image);
      inputs.push(trainImages);
      const labels = Array.from({ length: options.trainBatch }, (_, i) => i % 1000);
      const optimizers: AdamW[] = [];
      for (const attention of ['softmax', 'castling'] as const) {
        const model = VisionTransformer.create({ ...presets[name], imageSize: image, attention, device: 'cuda', seed: 2 });
        const optimizer = new AdamW(model.parameters(), { lr: 1e-4, totalSteps: 1e6 });
        optimizers.push(optimizer);
        // Castling in training form: the auxiliary branch on, as early in the schedule.
        const step = attention === 'castling' ? { castling: { tau0: 0.02, start: 0.5, end: 0.9 } } : {};
        cases.push({
          fields: { ...fields, kind: attention === 'castling' ? 'castling (auxiliary branch on)' : attention, pass: 'trainStep', batch: options.trainBatch },
          flops: 0,
          run: async () => {
            await model.trainStep(trainImages, labels, optimizer, step);
            return [];
          },
          times: [],
        });
        trained.push(model);
      }
      await timeInRounds(cases, options.repeats);
      for (const c of cases) {
        const { medianMs, minMs } = stats(c.times);
        records.push({ ...c.fields, medianMs, minMs, imagesPerSecond: (1000 * Number(c.fields.batch)) / medianMs });
      }
      log(`model ${name} ${image}²: ${cases.length} cases`);
      optimizers.forEach((o) => o.dispose());
      inputs.forEach((t) => t.dispose());
      for (const model of [...models.values(), ...trained]) model.dispose();
    }
  }
  return records;
}

/** ratioToTorch from PyTorch's records of the same section, kind, pass and size. */
function besideTorch(records: BenchRecord[], path: string): void {
  const theirs = (JSON.parse(readFileSync(path, 'utf8')) as { results: BenchRecord[] }).results;
  const key = (r: BenchRecord) => [r.section, r.kind, r.pass, r.tokens, r.model, r.image, r.batch].join('|');
  const byKey = new Map(theirs.map((r) => [key(r), r]));
  for (const r of records) {
    const match = byKey.get(key(r));
    if (match && typeof match.medianMs === 'number') {
      r.torchMs = match.medianMs;
      r.ratioToTorch = Number(r.medianMs) / match.medianMs;
    }
  }
}

export async function benchCuda(options: CudaBenchOptions = {}): Promise<BenchRecord[]> {
  const log = options.log ?? (() => {});
  const status = cudaAvailable();
  if (!status.available) return [{ section: 'cuda', skipped: `CUDA is not available: ${status.reason}` }];
  log(`device: ${status.device ?? 'unknown'} (compute capability ${status.computeCapability ?? '?'})`);
  const repeats = options.repeats ?? 10;
  const records = [
    ...(await benchAttentionOnCuda(options.tokens ?? [197, 785, 3137, 12545, 16384], repeats, log)),
    ...(await benchModelsOnCuda(
      {
        models: options.models ?? ['deitSmall', 'deitBase'],
        images: options.images ?? [224, 448, 896],
        predictBatches: options.predictBatches ?? [1, 32],
        trainBatch: options.trainBatch ?? 8,
        repeats,
      },
      log,
    )),
  ];
  if (options.torch) besideTorch(records, options.torch);
  return records.map((r) => ({ ...r, device: status.device }));
}
