// `bench model`: images/s of predict (batch 1 and 8) and trainStep (batch 32) for DeiT-Tiny and
// DeiT-Small with softmax and castling attention at 224, 448 and 896 pixels, and for predict the
// share of the pass spent outside the kernels (the orchestration around them).
import { AdamW, Tensor, VisionTransformer, presets, type AttentionKind } from '../lib/index.js';
import { stats, type BenchRecord } from './common.js';

export interface ModelBenchOptions {
  models?: Array<'deitTiny' | 'deitSmall'>;
  attentions?: AttentionKind[];
  images?: number[];
  predictBatches?: number[];
  trainBatch?: number;
  repeats?: number;
  /** Skip trainStep cases whose activations would not fit in this many bytes. */
  memoryBudget?: number;
  log?: (line: string) => void;
}

function randomImages(batch: number, size: number): Tensor {
  const data = new Float32Array(batch * 3 * size * size);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.7) * 0.5;
  return Tensor.fromArray(data, [batch, 3, size, size]);
}

/** Rough bytes a training step keeps for its backward: about 24 activations of tokens x width per block. */
function trainBytes(batch: number, tokens: number, width: number, depth: number): number {
  return batch * tokens * width * 4 * 24 * depth;
}

export async function benchModel(o: ModelBenchOptions = {}): Promise<BenchRecord[]> {
  const log = o.log ?? (() => {});
  const records: BenchRecord[] = [];
  const repeats = o.repeats ?? 3;
  for (const name of o.models ?? ['deitTiny', 'deitSmall']) {
    for (const image of o.images ?? [224, 448, 896]) {
      for (const attention of o.attentions ?? ['softmax', 'castling']) {
        const model = VisionTransformer.create({ ...presets[name], attention, imageSize: image });
        if (attention === 'castling') model.castle();
        const tokens = (image / 16) ** 2 + 1;
        for (const batch of o.predictBatches ?? [1, 8]) {
          const images = randomImages(batch, image);
          (await model.predict(images)).dispose();
          const times: number[] = [];
          let outside = 0;
          for (let r = 0; r < repeats; r++) {
            const start = performance.now();
            const { logits, steps } = await model.predictProfiled(images);
            const wall = performance.now() - start;
            logits.dispose();
            times.push(wall);
            outside += (wall - steps.reduce((a, s) => a + s.ms, 0)) / wall;
          }
          const s = stats(times);
          const rec = { kind: attention, model: name, image, tokens, batch, pass: 'forward', ...s, imagesPerSecond: (1000 * batch) / s.medianMs, outsideKernels: outside / repeats };
          records.push(rec);
          log(`${name} ${attention} ${image}px predict batch ${batch}: ${s.medianMs.toFixed(1)} ms (${rec.imagesPerSecond.toFixed(1)} img/s, ${(100 * rec.outsideKernels).toFixed(2)}% outside kernels)`);
          images.dispose();
        }
        const trainBatch = o.trainBatch ?? 32;
        const need = trainBytes(trainBatch, tokens, presets[name].width, presets[name].depth);
        if (need > (o.memoryBudget ?? 12e9)) {
          records.push({ kind: attention, model: name, image, tokens, batch: trainBatch, pass: 'train', skipped: `needs about ${(need / 1e9).toFixed(0)} GB of activations` });
          log(`${name} ${attention} ${image}px trainStep batch ${trainBatch}: skipped (about ${(need / 1e9).toFixed(0)} GB of activations)`);
        } else {
          const images = randomImages(trainBatch, image);
          const labels = Array.from({ length: trainBatch }, (_, i) => i % 1000);
          // Training runs the model in training form: castling with its auxiliary branch on.
          const trainable = VisionTransformer.create({ ...presets[name], attention, imageSize: image });
          const trainOpt = new AdamW(trainable.parameters(), { lr: 1e-4 });
          await trainable.trainStep(images, labels, trainOpt);
          const times: number[] = [];
          for (let r = 0; r < Math.max(1, repeats - 1); r++) {
            const start = performance.now();
            await trainable.trainStep(images, labels, trainOpt);
            times.push(performance.now() - start);
          }
          const s = stats(times);
          records.push({ kind: attention, model: name, image, tokens, batch: trainBatch, pass: 'train', ...s, imagesPerSecond: (1000 * trainBatch) / s.medianMs });
          log(`${name} ${attention} ${image}px trainStep batch ${trainBatch}: ${s.medianMs.toFixed(0)} ms (${((1000 * trainBatch) / s.medianMs).toFixed(1)} img/s)`);
          trainable.dispose();
          images.dispose();
        }
        model.dispose();
      }
    }
  }
  return records;
}
