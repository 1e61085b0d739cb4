// A model of a machine with more cores than this one: the thread pool's jobs as a trace records
// them (each piece's thread CPU time, see native/core/pool_trace.h) scheduled on T threads the
// way the pool schedules them. Pieces of a parallelFor go to whichever thread is free first (list
// scheduling, in the order they were recorded); index w of a run() goes to lane w % lanes. The
// caller's time outside jobs (serial sections) adds in full. What the model leaves out: memory
// bandwidth shared by the cores, and the pool's wake-up latency per job (reported as the count of
// jobs per call, so that it can be weighed against a machine's measured wake-up time).
import type { PoolTraceRegion } from '../lib/native.js';

/** The time a job takes on `threads` threads: the latest finish among its lanes. */
export function jobMakespanNs(region: PoolTraceRegion, threads: number): number {
  const lanes = Math.max(1, Math.min(threads, region.lanes));
  const busy = new Float64Array(lanes);
  region.pieceNs.forEach((ns, index) => {
    let lane = index % lanes;
    if (region.dynamic) {
      lane = 0;
      for (let l = 1; l < lanes; l++) if (busy[l]! < busy[lane]!) lane = l;
    }
    busy[lane] = busy[lane]! + ns;
  });
  return Math.max(0, ...busy);
}

export interface WorkSplit {
  threads: number;
  /** Jobs the pool ran (or ran inline: one piece) per call. */
  jobs: number;
  /** All CPU time of the call: every piece plus the serial sections (ms). */
  workMs: number;
  /** The caller's time outside jobs (ms): what no number of threads shortens. */
  serialMs: number;
  /** Work in jobs that did not split (one piece or one lane): serial in effect (ms). */
  unsplitMs: number;
  /** The call's time on `threads` ideal cores: serial + the sum of the jobs' makespans (ms). */
  modelMs: number;
  /** workMs / modelMs / threads: the share of the threads kept busy. */
  efficiency: number;
  /** The jobs that lose the most thread time (makespan x threads - work), by op. */
  losses: Array<{ op: string; lostMs: number; jobs: number }>;
}

export function workSplit(regions: PoolTraceRegion[], threads: number): WorkSplit {
  let pieces = 0;
  let serial = 0;
  let unsplit = 0;
  let model = 0;
  const losses = new Map<string, { lostMs: number; jobs: number }>();
  for (const region of regions) {
    const work = region.pieceNs.reduce((a, b) => a + b, 0);
    const makespan = jobMakespanNs(region, threads);
    pieces += work;
    serial += region.serialBeforeNs;
    if (region.pieceNs.length <= 1 || region.lanes <= 1) unsplit += work;
    model += makespan;
    const op = region.op || '(outside ops)';
    const entry = losses.get(op) ?? { lostMs: 0, jobs: 0 };
    entry.lostMs += (makespan * threads - work) / 1e6;
    entry.jobs += 1;
    losses.set(op, entry);
  }
  // While the caller runs serially, the other threads wait.
  if (serial > 0) losses.set('(serial, between jobs)', { lostMs: (serial * (threads - 1)) / 1e6, jobs: 0 });
  const workNs = pieces + serial;
  const modelNs = model + serial;
  return {
    threads,
    jobs: regions.length,
    workMs: workNs / 1e6,
    serialMs: serial / 1e6,
    unsplitMs: unsplit / 1e6,
    modelMs: modelNs / 1e6,
    efficiency: modelNs > 0 ? workNs / modelNs / threads : 1,
    losses: [...losses].map(([op, l]) => ({ op, ...l })).sort((a, b) => b.lostMs - a.lostMs),
  };
}
