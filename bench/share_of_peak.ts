// Every result's share of the machine's FMA peak, measured in the same run (bench/peak.ts): a
// GFLOP/s figure alone says little across machines, its share of what this CPU's FMA units can
// deliver does. Each record with `gflops` gains `shareOfPeak`, against the peak of its own CPU
// path and thread count (the record's `isa` and `threads` where it has them, else the ones the
// run used). The peaks are measured after the benchmark, twice each with the larger kept: a
// shared machine's noise only ever lowers a peak, so the larger is the better estimate.
import { existsSync } from 'node:fs';

import { backendInfo, type CpuPath } from '../lib/index.js';
import type { BenchRecord } from './common.js';
import { benchAddonPath } from './bench_addon.js';
import { measurePeak } from './peak.js';

export interface MeasuredPeak {
  isa: CpuPath;
  threads: number;
  gflops: number;
}

/**
 * Adds shareOfPeak to the records with gflops; returns the peaks measured (none when no record has
 * gflops, or when the benchmark addon that measures them is not built: then `log` says so).
 */
export async function addShareOfPeak(records: BenchRecord[], log: (line: string) => void): Promise<MeasuredPeak[]> {
  if (!records.some((r) => typeof r.gflops === 'number')) return [];
  if (!existsSync(benchAddonPath())) {
    log(`shareOfPeak: not measured: the FMA peak needs the benchmark addon, which is not built (npm run build:native in a clone)`);
    return [];
  }
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
