// `bench model`: images/s of predict (batch 1 and 8) and trainStep (batch 32) for DeiT-Tiny and
// DeiT-Small with softmax and castling attention (sparsifiner with --kinds) at 224, 448 and 896
// pixels, and for predict the share of the pass spent outside the kernels (the orchestration
// around them) and the time against softmax's, the kinds timed in interleaved rounds. A trainStep batch
// whose activations would not fit in the memory budget runs as micro-batches (gradient
// accumulation, trainStep's microBatch option); the record says which micro-batch was used.
import { AdamW, VisionTransformer, presets, type AttentionKind } from '../lib/index.js';
import { vitFlops } from '../lib/nn/model_flops.js';
import { native } from '../lib/native.js';
import { randomImages, stats, type BenchRecord } from './common.js';

export interface ModelBenchOptions {
  models?: Array<'deitTiny' | 'deitSmall'>;
  attentions?: AttentionKind[];
  images?: number[];
  predictBatches?: number[];
  trainBatch?: number;
  repeats?: number;
  /** Bytes of activations a trainStep pass may keep: larger batches run as micro-batches that fit. */
  memoryBudget?: number;
  log?: (line: string) => void;
}

/** Rough bytes a training step keeps for its backward: about 24 activations of tokens x width per block. */
function trainBytes(batch: number, tokens: number, width: number, depth: number): number {
  return batch * tokens * width * 4 * 24 * depth;
}

/**
 * The micro-batch for a training batch under a memory budget: as few passes as fit, of equal
 * size where possible (32 in passes of at most 10 runs as 4 x 8, not 10, 10, 10, 2); 0 when not
 * even one image fits.
 */
export function microBatchFor(batch: number, perImageBytes: number, budget: number): number {
  const most = Math.min(batch, Math.floor(budget / perImageBytes));
  if (most < 1) return 0;
  return Math.ceil(batch / Math.ceil(batch / most));
}

/** Predict of every kind at one batch size, timed in interleaved rounds so that the kinds' ratios are side by side. */
async function timePredict(models: Map<AttentionKind, VisionTransformer>, batch: number, image: number, repeats: number): Promise<Map<AttentionKind, { times: number[]; outside: number }>> {
  const images = randomImages(batch, image);
  const result = new Map([...models.keys()].map((kind) => [kind, { times: [] as number[], outside: 0 }]));
  for (const model of models.values()) (await model.predict(images)).dispose();
  for (let r = 0; r < repeats; r++) {
    for (const [kind, model] of models) {
      const start = performance.now();
      const { logits, steps } = await model.predictProfiled(images);
      const wall = performance.now() - start;
      logits.dispose();
      const entry = result.get(kind)!;
      entry.times.push(wall);
      entry.outside += (wall - steps.reduce((a, s) => a + s.ms, 0)) / wall / repeats;
    }
  }
  images.dispose();
  return result;
}

export async function benchModel(o: ModelBenchOptions = {}): Promise<BenchRecord[]> {
  const log = o.log ?? (() => {});
  const records: BenchRecord[] = [];
  const repeats = o.repeats ?? 3;
  const kinds = o.attentions ?? ['softmax', 'castling'];
  for (const name of o.models ?? ['deitTiny', 'deitSmall']) {
    for (const image of o.images ?? [224, 448, 896]) {
      const tokens = (image / 16) ** 2 + 1;
      const models = new Map(kinds.map((attention) => [attention, VisionTransformer.create({ ...presets[name], attention, imageSize: image })]));
      models.get('castling')?.castle();
      for (const batch of o.predictBatches ?? [1, 8]) {
        const timed = await timePredict(models, batch, image, repeats);
        const softmaxMs = timed.has('softmax') ? stats(timed.get('softmax')!.times).medianMs : undefined;
        for (const [attention, { times, outside }] of timed) {
          const s = stats(times);
          const ratio = softmaxMs && attention !== 'softmax' ? { ratioToSoftmax: s.medianMs / softmaxMs } : {};
          const flops = batch * vitFlops({ ...presets[name], attention, imageSize: image }, 'forward');
          const rec = { kind: attention, model: name, image, tokens, batch, pass: 'forward', ...s, imagesPerSecond: (1000 * batch) / s.medianMs, flops, gflops: flops / (s.medianMs * 1e6), outsideKernels: outside, ...ratio };
          records.push(rec);
          log(`${name} ${attention} ${image}px predict batch ${batch}: ${s.medianMs.toFixed(1)} ms (${rec.imagesPerSecond.toFixed(1)} img/s, ${(100 * outside).toFixed(2)}% outside kernels)`);
        }
      }
      for (const model of models.values()) model.dispose();
      for (const attention of kinds) records.push(await benchTrainStep(name, attention, image, tokens, repeats, o, log));
    }
  }
  return records;
}

/** trainStep images/s for one kind (one kind at a time: a step at 896 px keeps gigabytes). */
async function benchTrainStep(name: 'deitTiny' | 'deitSmall', attention: AttentionKind, image: number, tokens: number, repeats: number, o: ModelBenchOptions, log: (line: string) => void): Promise<BenchRecord> {
  const trainBatch = o.trainBatch ?? 32;
  const perImage = trainBytes(1, tokens, presets[name].width, presets[name].depth);
  const budget = o.memoryBudget ?? 12e9;
  const microBatch = microBatchFor(trainBatch, perImage, budget);
  if (budget === 0) return { kind: attention, model: name, image, tokens, batch: trainBatch, pass: 'train', skipped: 'not asked for (--train-budget 0)' };
  if (microBatch === 0) {
    log(`${name} ${attention} ${image}px trainStep batch ${trainBatch}: skipped (one image needs about ${(perImage / 1e9).toFixed(1)} GB of activations)`);
    return { kind: attention, model: name, image, tokens, batch: trainBatch, pass: 'train', skipped: `one image needs about ${(perImage / 1e9).toFixed(1)} GB of activations` };
  }
  const images = randomImages(trainBatch, image);
  const labels = Array.from({ length: trainBatch }, (_, i) => i % 1000);
  // Training runs the model in training form: castling with its auxiliary branch on.
  const trainable = VisionTransformer.create({ ...presets[name], attention, imageSize: image });
  const trainOpt = new AdamW(trainable.parameters(), { lr: 1e-4 });
  // Absent when the whole batch fits: the ordinary single-pass step.
  const stepOptions = microBatch < trainBatch ? { microBatch } : {};
  await trainable.trainStep(images, labels, trainOpt, stepOptions);
  const times: number[] = [];
  native.memoryStats(true); // peakBytes: the most native memory a step adds to what is live before it
  const live = native.memoryStats().liveBytes;
  for (let r = 0; r < Math.max(1, repeats - 1); r++) {
    const start = performance.now();
    await trainable.trainStep(images, labels, trainOpt, stepOptions);
    times.push(performance.now() - start);
  }
  const s = stats(times);
  const peakBytes = native.memoryStats().peakBytes - live;
  const split = microBatch < trainBatch ? ` in micro-batches of ${microBatch}` : '';
  log(`${name} ${attention} ${image}px trainStep batch ${trainBatch}${split}: ${s.medianMs.toFixed(0)} ms (${((1000 * trainBatch) / s.medianMs).toFixed(1)} img/s, peak ${(peakBytes / 1e9).toFixed(2)} GB over the model)`);
  trainable.dispose();
  images.dispose();
  // Castling trains in training form: its auxiliary branch's FLOPs are not counted (vitFlops).
  const flops = trainBatch * vitFlops({ ...presets[name], attention, imageSize: image }, 'train');
  return { kind: attention, model: name, image, tokens, batch: trainBatch, microBatch, pass: 'train', ...s, imagesPerSecond: (1000 * trainBatch) / s.medianMs, flops, gflops: flops / (s.medianMs * 1e6), peakBytes };
}
