// `bench serve`: a service's load on one model, one image per request. A burst of concurrent
// requests answered by model.predict each (a pass per image) and by model.batcher() (requests
// waiting for a pass go together in the next), timed in interleaved rounds: images/s, and each
// request's latency from the burst's start (median and 95th percentile over all rounds).
import type { AddressInfo } from 'node:net';

import { Tensor, VisionTransformer, presets, type AttentionKind } from '../lib/index.js';
import { serveModel } from '../lib/entry/serve.js';
import { stats, type BenchRecord } from './common.js';
import { syntheticPhoto } from './images.js';
import { benchLoad, type LoadBenchOptions } from './serve_load.js';

export interface ServeBenchOptions {
  models?: Array<'deitTiny' | 'deitSmall'>;
  attentions?: AttentionKind[];
  /** Concurrent requests per burst. */
  requests?: number[];
  maxBatch?: number;
  rounds?: number;
  /**
   * Through `serveModel` over HTTP instead: 640 x 480 JPEGs POSTed to /classify (decoding
   * included), a burst of concurrent requests against the same requests sent one after another.
   */
  http?: boolean;
  /** A steady load over HTTP instead, its server in a child process (serve_load.ts). */
  load?: Omit<LoadBenchOptions, 'models' | 'attentions' | 'log'>;
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
  if (o.load) return benchLoad({ ...o.load, models: o.models, attentions: o.attentions, log: o.log });
  if (o.http) return benchHttp(o);
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

/** bench serve --http: POST /classify of serveModel, a burst at once against one request at a time. */
async function benchHttp(o: ServeBenchOptions): Promise<BenchRecord[]> {
  const log = o.log ?? (() => {});
  const records: BenchRecord[] = [];
  const rounds = o.rounds ?? 5;
  const counts = o.requests ?? [1, 8, 32];
  const photos = await Promise.all(Array.from({ length: Math.max(...counts) }, (_, i) => syntheticPhoto(i)));
  for (const name of o.models ?? ['deitTiny', 'deitSmall']) {
    for (const attention of o.attentions ?? ['softmax', 'castling']) {
      const model = VisionTransformer.create({ ...presets[name], attention });
      model.castle();
      const server = serveModel(model, { maxBatch: o.maxBatch, maxWaiting: 1 << 20 });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/classify?top=1`;
      const classify = async (photo: Buffer) => {
        const response = await fetch(url, { method: 'POST', body: new Uint8Array(photo) });
        if (response.status !== 200) throw new Error(`POST /classify: ${response.status} ${await response.text()}`);
        await response.arrayBuffer();
      };
      const ways = {
        'http concurrent': (batch: Buffer[]) => Promise.all(batch.map(classify)),
        'http sequential': async (batch: Buffer[]) => {
          for (const photo of batch) await classify(photo);
        },
      };
      for (const count of counts) {
        const batch = photos.slice(0, count);
        const timed = new Map(Object.keys(ways).map((way) => [way, [] as number[]]));
        for (const run of Object.values(ways)) await run(batch); // warm-up
        for (let r = 0; r < rounds; r++) {
          for (const [way, run] of Object.entries(ways)) {
            const start = performance.now();
            await run(batch);
            timed.get(way)!.push(performance.now() - start);
          }
        }
        const sequentialMs = stats(timed.get('http sequential')!).medianMs;
        for (const [way, times] of timed) {
          const s = stats(times);
          const rec: BenchRecord = { kind: attention, model: name, image: model.config.imageSize, requests: count, pass: way, ...s, imagesPerSecond: (1000 * count) / s.medianMs, ...(way === 'http concurrent' ? { speedupOverSequential: sequentialMs / s.medianMs } : {}) };
          records.push(rec);
          log(`${name} ${attention} ${count} JPEGs over HTTP, ${way}: ${s.medianMs.toFixed(1)} ms, ${(rec.imagesPerSecond as number).toFixed(1)} img/s`);
        }
      }
      await new Promise((resolve) => server.close(resolve));
      model.dispose();
    }
  }
  return records;
}
