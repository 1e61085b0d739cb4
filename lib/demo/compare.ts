// Castling (linear-angular, castled) against softmax attention in the same ViT at growing token
// counts: batch-1 predict latency side by side in one run, medians of a few repetitions.
import { presets } from '../nn/config.js';
import { VisionTransformer } from '../nn/vit.js';
import { Tensor } from '../tensor.js';

export interface CompareOptions {
  preset: 'deitTiny' | 'deitSmall';
  imageSizes?: number[];
  repeats?: number;
  log?: (line: string) => void;
}

export interface CompareRow {
  image: number;
  tokens: number;
  softmaxMs: number;
  castlingMs: number;
  speedup: number;
}

async function medianPredictMs(model: VisionTransformer, images: Tensor, repeats: number): Promise<number> {
  (await model.predict(images)).dispose(); // warm-up: records the plan, touches the memory
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    (await model.predict(images)).dispose();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

export async function compareAttention(options: CompareOptions): Promise<CompareRow[]> {
  const log = options.log ?? (() => {});
  const sizes = options.imageSizes ?? [224, 448, 896];
  const repeats = options.repeats ?? 3;
  const rows: CompareRow[] = [];
  log(`${options.preset}, batch 1: predict latency, castling (linear-angular, castled) vs softmax attention`);
  log('image  tokens  softmax ms  castling ms  speed-up');
  for (const image of sizes) {
    const pixels = new Float32Array(3 * image * image);
    for (let i = 0; i < pixels.length; i++) pixels[i] = Math.sin(i * 0.37);
    const input = Tensor.fromArray(pixels, [1, 3, image, image]);
    const ms: Record<string, number> = {};
    for (const attention of ['softmax', 'castling'] as const) {
      const model = VisionTransformer.create({ ...presets[options.preset], attention, imageSize: image, numClasses: 1000 });
      if (attention === 'castling') model.castle();
      ms[attention] = await medianPredictMs(model, input, repeats);
      model.dispose();
    }
    input.dispose();
    const row = { image, tokens: (image / 16) ** 2 + 1, softmaxMs: ms.softmax!, castlingMs: ms.castling!, speedup: ms.softmax! / ms.castling! };
    rows.push(row);
    log(`${String(image).padStart(5)}  ${String(row.tokens).padStart(6)}  ${row.softmaxMs.toFixed(1).padStart(10)}  ${row.castlingMs.toFixed(1).padStart(11)}  ${row.speedup.toFixed(2).padStart(7)}x`);
  }
  return rows;
}
