// Image files to classes, the path a classifying service takes: how fast files are decoded and
// prepared (readImages), how fast the model runs on prepared tensors (predict), and the two
// together (classify: read a chunk, predict it, the next chunk). Synthetic
// 640 x 480 JPEG photos (smooth colour fields with noise), timed in interleaved rounds.
import sharp from 'sharp';

import { VisionTransformer, presets, type AttentionKind } from '../lib/index.js';
import { stats, type BenchRecord } from './common.js';

export interface ImagesBenchOptions {
  model?: 'deitTiny' | 'deitSmall';
  attentions?: AttentionKind[];
  /** Images per predict (and per classify chunk). */
  batches?: number[];
  /** Files classified per round. */
  files?: number;
  repeats?: number;
  log?: (line: string) => void;
}

const WIDTH = 640;
const HEIGHT = 480;

/** A JPEG that decodes like a photo: smooth gradients and a little noise, quality 90. */
export async function syntheticPhoto(seed: number): Promise<Buffer> {
  const pixels = new Uint8Array(WIDTH * HEIGHT * 3);
  let state = seed * 2654435761;
  for (let y = 0; y < HEIGHT; y++) {
    for (let x = 0; x < WIDTH; x++) {
      state = (state * 1103515245 + 12345) >>> 0;
      const noise = (state >>> 24) % 24;
      const i = (y * WIDTH + x) * 3;
      pixels[i] = (x * (seed + 1)) % 200 + noise;
      pixels[i + 1] = (y * 2 + seed * 40) % 200 + noise;
      pixels[i + 2] = ((x + y) * 3) % 200 + noise;
    }
  }
  return sharp(pixels, { raw: { width: WIDTH, height: HEIGHT, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
}

interface Case {
  fields: BenchRecord;
  images: number;
  run: () => Promise<void>;
  times: number[];
}

export async function benchImages(o: ImagesBenchOptions = {}): Promise<BenchRecord[]> {
  const log = o.log ?? (() => {});
  const preset = o.model ?? 'deitSmall';
  const files = o.files ?? 32;
  const photos = await Promise.all(Array.from({ length: files }, (_, i) => syntheticPhoto(i)));
  log(`${files} JPEG files of ${WIDTH} x ${HEIGHT}, ${Math.round(photos.reduce((a, p) => a + p.length, 0) / files / 1024)} KB each`);
  const records: BenchRecord[] = [];
  for (const attention of o.attentions ?? ['castling', 'softmax']) {
    const model = VisionTransformer.create({ ...presets[preset], attention, numClasses: 1000 });
    if (attention === 'castling') model.castle();
    for (const batch of o.batches ?? [1, 8]) {
      const chunk = photos.slice(0, batch);
      const prepared = await model.readImages(chunk);
      const fields = { model: preset, kind: attention, image: 224, batch };
      const cases: Case[] = [
        { fields: { ...fields, pass: 'readImages' }, images: batch, times: [], run: async () => (await model.readImages(chunk)).dispose() },
        { fields: { ...fields, pass: 'predict' }, images: batch, times: [], run: async () => (await model.predict(prepared)).dispose() },
        { fields: { ...fields, pass: 'classify' }, images: files, times: [], run: async () => void (await model.classify(photos, { batchSize: batch })) },
      ];
      for (const c of cases) await c.run(); // warm-up: plans recorded, sharp loaded
      for (let r = 0; r < (o.repeats ?? 5); r++) {
        for (const c of cases) {
          const start = performance.now();
          await c.run();
          c.times.push(performance.now() - start);
        }
      }
      const perImage = (c: Case) => stats(c.times).medianMs / c.images;
      const [read, predict, classify] = cases as [Case, Case, Case];
      for (const c of cases) {
        const st = stats(c.times);
        const record: BenchRecord = { ...c.fields, files: c.images, ...st, imagesPerSecond: (1000 * c.images) / st.medianMs };
        // classify against the sum of its parts timed alone: above 1, what runs around them costs.
        if (c === classify) record.ratioToSequential = perImage(classify) / (perImage(read) + perImage(predict));
        records.push(record);
      }
      log(`${preset} ${attention} batch ${batch}: readImages ${perImage(read).toFixed(1)} ms/image, predict ${perImage(predict).toFixed(1)}, classify ${perImage(classify).toFixed(1)}`);
      prepared.dispose();
    }
    model.dispose();
  }
  return records;
}
