// `bench scaling`: does the work of a call divide into pieces that keep many threads busy? Each
// workload runs once with the pool at each thread count (more threads than this machine has
// cores: the pool then splits the work as it would on a machine that has them) under the pool's
// trace, and the trace is scheduled on that many ideal cores (bench/work_split.ts). Reported per
// workload and thread count: the jobs per call, the serial time outside jobs (which must not
// grow with threads), the work that did not split, the modelled share of the threads kept busy,
// and the ops that lose the most thread time.
import { AdamW, VisionTransformer, presets, setThreads, backendInfo, type AttentionKind } from '../lib/index.js';
import { native, type PoolTraceRegion } from '../lib/native.js';
import { randomImages, type BenchRecord } from './common.js';
import { workSplit } from './work_split.js';

export interface ScalingOptions {
  threads?: number[];
  attentions?: AttentionKind[];
  batches?: number[];
  image?: number;
  /** Also trace a trainStep at the largest batch. */
  train?: boolean;
  log?: (line: string) => void;
}

/** Runs `call` once untraced (warm-up: plans, caches) and once traced; returns the trace. */
async function traced(call: () => Promise<void>) {
  await call();
  native.tracePool(true);
  try {
    await call();
  } catch (error) {
    native.tracePool(false);
    throw error;
  }
  return native.tracePool(false);
}

export async function benchScaling(o: ScalingOptions = {}): Promise<BenchRecord[]> {
  const log = o.log ?? (() => {});
  const threadCounts = o.threads ?? [2, 16, 64];
  const kinds = o.attentions ?? ['castling', 'softmax', 'sparsifiner'];
  const batches = o.batches ?? [1, 8];
  const image = o.image ?? 224;
  const restore = backendInfo().threads;
  const records: BenchRecord[] = [];
  const report = (workload: string, kind: string, batch: number, threads: number, regions: PoolTraceRegion[]) => {
    const split = workSplit(regions, threads);
    const worst = split.losses.slice(0, 3).map((l) => `${l.op} ${(l.lostMs / split.threads).toFixed(2)} ms`);
    log(
      `${workload} ${kind} batch ${batch}, ${threads} threads: ${split.jobs} jobs, work ${split.workMs.toFixed(1)} ms, serial ${split.serialMs.toFixed(2)} ms, unsplit ${split.unsplitMs.toFixed(2)} ms, ` +
        `modelled ${split.modelMs.toFixed(2)} ms = ${(100 * split.efficiency).toFixed(1)}% of ${threads} threads busy; most lost: ${worst.join(', ')}`,
    );
    records.push({
      kind,
      workload,
      batch,
      threads,
      jobs: split.jobs,
      workMs: split.workMs,
      serialMs: split.serialMs,
      unsplitMs: split.unsplitMs,
      modelMs: split.modelMs,
      efficiency: split.efficiency,
      mostLost: split.losses[0]?.op,
    });
  };
  try {
    for (const attention of kinds) {
      const model = VisionTransformer.create({ ...presets.deitSmall, attention, imageSize: image });
      if (attention === 'castling') model.castle();
      for (const batch of batches) {
        const input = randomImages(batch, image);
        for (const threads of threadCounts) {
          setThreads(threads);
          report(`deitSmall ${image}px predict`, attention, batch, threads, await traced(async () => (await model.predict(input)).dispose()));
        }
        input.dispose();
      }
      model.dispose();
    }
    if (o.train) {
      const batch = Math.max(...batches);
      const model = VisionTransformer.create({ ...presets.deitSmall, attention: 'castling', imageSize: image });
      const optimizer = new AdamW(model.parameters(), { lr: 1e-5 });
      const input = randomImages(batch, image);
      const labels = Array.from({ length: batch }, (_, i) => i % 1000);
      for (const threads of threadCounts) {
        setThreads(threads);
        report(`deitSmall ${image}px trainStep`, 'castling', batch, threads, await traced(async () => void (await model.trainStep(input, labels, optimizer))));
      }
      input.dispose();
      model.dispose();
    }
  } finally {
    setThreads(restore);
  }
  return records;
}
