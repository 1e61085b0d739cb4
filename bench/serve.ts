// `bench serve`: a service's load on one model, one image per request. A burst of concurrent
// requests answered by model.predict each (a pass per image) and by model.batcher() (requests
// waiting for a pass go together in the next), timed in interleaved rounds: images/s, and each
// request's latency from the burst's start (median and 95th percentile over all rounds).
import { Tensor, VisionTransformer, presets, type AttentionKind } from '../lib/index.js';
import { stats, type BenchRecord } from './common.js';

export interface ServeBenchOptions {
  models?: Array<'deitTiny' | 'deitSmall'>;
  attentions?: AttentionKind[];
  /** Concurrent requests per burst. */
  requests?: number[];
  maxBatch?: number;
  rounds?: number;
  log?: (line: string) => void;
}

type Way = 'predict' | 'batcher';

function requestImages(count: number, size: number): Tensor[] {
  return Array.from({ length: count }, (_, r) => {
    const data = new Float32Array(3 * size * size);
    for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.7 + r) * 0.5;
    return Tensor.fromArray(data, [1, 3, size, size]);
  });
}

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))]!;
}

/** One burst: every request at once; the burst's wall time and each request's latency. */
async function burst(images: Tensor[], answer: (image: Tensor) => Promise<Tensor>): Promise<{ wallMs: number; latencies: number[] }> {
  const start = performance.now();
  const latencies = await Promise.all(
    images.map(async (image) => {
      (await answer(image)).dispose();
      return performance.now() - start;
    }),
  );
  return { wallMs: performance.now() - start, latencies };
}

export async function benchServe(o: ServeBenchOptions = {}): Promise<BenchRecord[]> {
  const log = o.log ?? (() => {});
  const records: BenchRecord[] = [];
  const rounds = o.rounds ?? 5;
  for (const name of o.models ?? ['deitTiny', 'deitSmall']) {
    for (const attention of o.attentions ?? ['softmax', 'castling']) {
      const model = VisionTransformer.create({ ...presets[name], attention });
      model.castle();
      const batcher = model.batcher({ maxBatch: o.maxBatch });
      const ways: Record<Way, (image: Tensor) => Promise<Tensor>> = { predict: (image) => model.predict(image), batcher: (image) => batcher.predict(image) };
      for (const count of o.requests ?? [1, 8, 32]) {
        const images = requestImages(count, model.config.imageSize);
        const timed = new Map<Way, { walls: number[]; latencies: number[] }>([
          ['predict', { walls: [], latencies: [] }],
          ['batcher', { walls: [], latencies: [] }],
        ]);
        for (const way of timed.keys()) await burst(images, ways[way]); // warm-up: plans of each batch size
        for (let r = 0; r < rounds; r++) {
          for (const [way, entry] of timed) {
            const { wallMs, latencies } = await burst(images, ways[way]);
            entry.walls.push(wallMs);
            entry.latencies.push(...latencies);
          }
        }
        const predictMs = stats(timed.get('predict')!.walls).medianMs;
        for (const [way, { walls, latencies }] of timed) {
          const s = stats(walls);
          const rec: BenchRecord = {
            kind: attention,
            model: name,
            image: model.config.imageSize,
            requests: count,
            pass: way,
            ...s,
            imagesPerSecond: (1000 * count) / s.medianMs,
            latencyMedianMs: percentile(latencies, 0.5),
            latencyP95Ms: percentile(latencies, 0.95),
            ...(way === 'batcher' ? { speedupOverPredict: predictMs / s.medianMs } : {}),
          };
          records.push(rec);
          log(`${name} ${attention} ${count} requests via ${way}: ${s.medianMs.toFixed(1)} ms a burst, ${(rec.imagesPerSecond as number).toFixed(1)} img/s, latency median ${(rec.latencyMedianMs as number).toFixed(1)} ms, p95 ${(rec.latencyP95Ms as number).toFixed(1)} ms`);
        }
        for (const image of images) image.dispose();
      }
      model.dispose();
    }
  }
  return records;
}
