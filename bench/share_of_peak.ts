// Every result's share of the machine's FMA peak, measured in the same run (bench/peak.ts): a
// GFLOP/s figure alone says little across machines, its share of what this CPU's FMA units can
// deliver does. Each record with `gflops` gains `shareOfPeak`, against the peak of its own CPU
// path and thread count (the record's `isa` and `threads` where it has them, else the ones the
// run used). The peaks are measured after the benchmark, twice each with the larger kept (a
// shared machine's noise only ever lowers a peak, so the larger is the better estimate), and the
// default path and thread count also before it: the two readings show whether the host's speed
// drifted while the benchmark ran, and the larger of all is the one the shares are taken against.
import { existsSync } from 'node:fs';

import { backendInfo, type CpuPath } from '../lib/index.js';
import type { BenchRecord } from './common.js';
import { benchAddonPath } from './bench_addon.js';
import { measurePeak } from './peak.js';

export interface MeasuredPeak {
  isa: CpuPath;
  threads: number;
  /** The larger of the readings: what the shares are taken against. */
  gflops: number;
  /** The reading before the benchmark ran (its default CPU path and thread count only). */
  beforeGflops?: number;
  afterGflops: number;
}

/** A reading before or after the run: the larger of two measurements. */
type PeakReading = Pick<MeasuredPeak, 'isa' | 'threads' | 'gflops'>;

/** Readings differing by more than this share say that the host's speed drifted during the run. */
const DRIFT_WARNING = 0.05;

async function readPeak(isa: CpuPath, threads: number): Promise<number> {
  return Math.max(await measurePeak(isa, threads), await measurePeak(isa, threads));
}

/**
 * The peak of the default CPU path and thread count, read before a benchmark runs (undefined
 * without the benchmark addon), for addShareOfPeak to set beside its reading after the run.
 */
export async function peakBeforeRun(): Promise<PeakReading | undefined> {
  if (!existsSync(benchAddonPath())) return undefined;
  const info = backendInfo();
  return { isa: info.cpuPath, threads: info.threads, gflops: await readPeak(info.cpuPath, info.threads) };
}

/**
 * Adds shareOfPeak to the records with gflops; returns the peaks measured (none when no record has
 * gflops, or when the benchmark addon that measures them is not built: then `log` says so).
 */
export async function addShareOfPeak(records: BenchRecord[], log: (line: string) => void, before?: PeakReading): Promise<MeasuredPeak[]> {
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
    const afterGflops = await readPeak(isa, threads);
    const beforeGflops = before && before.isa === isa && before.threads === threads ? before.gflops : undefined;
    const gflops = Math.max(afterGflops, beforeGflops ?? 0);
    peaks.set(key, { isa, threads, gflops, ...(beforeGflops === undefined ? {} : { beforeGflops }), afterGflops });
    if (beforeGflops !== undefined && Math.abs(afterGflops - beforeGflops) > DRIFT_WARNING * gflops) {
      log(`shareOfPeak: the ${isa} peak on ${threads} thread${threads === 1 ? '' : 's'} read ${beforeGflops.toFixed(1)} GFLOP/s before the run and ${afterGflops.toFixed(1)} after: the host's speed drifted while it ran, and the shares (against the larger) carry that uncertainty`);
    }
  }
  for (const r of records) {
    if (typeof r.gflops !== 'number') continue;
    const k = keyOf(r);
    r.shareOfPeak = r.gflops / peaks.get(`${k.isa}/${k.threads}`)!.gflops;
  }
  return [...peaks.values()];
}
