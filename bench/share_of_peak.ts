// Every result's share of the machine's FMA peak, measured in the same run (bench/peak.ts): a
// GFLOP/s figure alone says little across machines, its share of what this CPU's FMA units can
// deliver does. Each record with `gflops` gains `shareOfPeak`, against the peak of its own CPU
// path and thread count (the record's `isa` and `threads` where it has them, else the ones the
// run used). The peaks are measured after the benchmark, twice each with the larger kept: a
// shared machine's noise only ever lowers a peak, so the larger is the better estimate.
import { backendInfo, type CpuPath } from '../lib/index.js';
import type { BenchRecord } from './common.js';
import { measurePeak } from './peak.js';

export interface MeasuredPeak {
  isa: CpuPath;
  threads: number;
  gflops: number;
}

/** Adds shareOfPeak to the records with gflops; returns the peaks measured (none when no record has gflops). */
export async function addShareOfPeak(records: BenchRecord[]): Promise<MeasuredPeak[]> {
  const info = backendInfo();
  const keyOf = (r: BenchRecord) => ({ isa: (typeof r.isa === 'string' ? r.isa : info.cpuPath) as CpuPath, threads: typeof r.threads === 'number' ? r.threads : info.threads });
  const wanted = new Map<string, { isa: CpuPath; threads: number }>();
  for (const r of records) {
    if (typeof r.gflops !== 'number') continue;
    const k = keyOf(r);
    wanted.set(`${k.isa}/${k.threads}`, k);
  }
  const peaks = new Map<string, MeasuredPeak>();
  for (const [key, { isa, threads }] of wanted) {
    const gflops = Math.max(await measurePeak(isa, threads), await measurePeak(isa, threads));
    peaks.set(key, { isa, threads, gflops });
  }
  for (const r of records) {
    if (typeof r.gflops !== 'number') continue;
    const k = keyOf(r);
    r.shareOfPeak = r.gflops / peaks.get(`${k.isa}/${k.threads}`)!.gflops;
  }
  return [...peaks.values()];
}
