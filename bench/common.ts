// What every benchmark shares: the machine description, statistics over repeated timings, the
// table printer and the JSON file in the one flat shape all benchmarks use (docs/benchmarks.md).
import { execFileSync } from 'node:child_process';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

import { backendInfo, Tensor } from '../lib/index.js';

export interface Machine {
  cpu: string;
  isa: string;
  threads: number;
  node: string;
}

export type BenchRecord = Record<string, string | number | boolean | undefined>;

export interface BenchResult {
  bench: string;
  machine: Machine;
  commit: string;
  results: BenchRecord[];
}

export function machine(): Machine {
  const info = backendInfo();
  return { cpu: info.cpu, isa: info.cpuPath, threads: info.threads, node: process.version };
}

export function commit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return 'unknown';
  }
}

/** Images [batch, 3, size, size] of a fixed pattern (not zeros): a model's input for timing. */
export function randomImages(batch: number, size: number): Tensor {
  const data = new Float32Array(batch * 3 * size * size);
  for (let i = 0; i < data.length; i++) data[i] = Math.sin(i * 0.7) * 0.5;
  return Tensor.fromArray(data, [batch, 3, size, size]);
}

/** `count` reproducible values in [-1, 1), different per seed (a small LCG). */
export function randomValues(count: number, seed: number): Float32Array {
  const data = new Float32Array(count);
  let s = seed >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s / 2 ** 31 - 1;
  }
  return data;
}

let gc: (() => void) | undefined;

/**
 * Runs V8's full garbage collection now. Native tensors count as external memory, so a case that
 * allocates large ones (a backward's gradients) starts a collection that V8 finishes on the main
 * thread a few milliseconds later, while whatever runs next is being timed: on a 2-core machine it
 * takes a core from the kernel's threads (+5-10 ms on a 9 ms kernel). Collecting between cases
 * charges each case only with the collections its own allocations start.
 */
export function collectGarbage(): void {
  if (!gc) {
    setFlagsFromString('--expose-gc');
    gc = runInNewContext('gc') as () => void;
  }
  gc();
}

export interface Stats {
  medianMs: number;
  minMs: number;
  maxMs: number;
}

export function stats(timesMs: number[]): Stats {
  const sorted = [...timesMs].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  const median = sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
  return { medianMs: median, minMs: sorted[0]!, maxMs: sorted[sorted.length - 1]! };
}

/** Prints records as an aligned table with the given columns. */
export function printTable(records: BenchRecord[], columns: string[]): void {
  const cell = (v: unknown) => {
    if (typeof v !== 'number') return String(v ?? '');
    if (Number.isInteger(v)) return String(v);
    // Small non-zero values (errors, tolerances) would read as 0.000 in fixed notation.
    return Math.abs(v) < 1e-3 ? v.toExponential(2) : v.toFixed(v < 10 ? 3 : 1);
  };
  const rows = records.map((r) => columns.map((c) => cell(r[c])));
  const widths = columns.map((c, i) => Math.max(c.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((s, i) => s.padStart(widths[i]!)).join('  ');
  console.log(line(columns));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(line(r));
}

/** Writes JSON atomically: a temporary file renamed over the target, so a reader never sees half. */
export function writeJsonAtomic(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(value, null, 2) + '\n');
  renameSync(tmp, path);
}
