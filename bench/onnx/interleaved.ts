// Two runtimes timed against each other on one graph (the `onnx` benchmark's cases): the same
// output from both first, then rounds of one turn each, interleaved (the machines are noisy shared
// VMs: a quiet or busy spell hits both alike), and the median of the per-round ratios.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';

import { Tensor } from '../../lib/index.js';
import { stats, type BenchRecord } from '../common.js';
import type { Ort, OrtSession } from './ort.js';

export interface TimingOptions {
  /** Timed rounds per case (each one run of ours and one of onnxruntime); default from a time budget. */
  rounds?: number;
  /** Seconds of timing per case when rounds is not given. */
  seconds?: number;
  /**
   * Before each round, wait (up to a minute) until the host's CPU pressure is below this percent:
   * on a shared VM, rounds taken while other work competes for the 2 cores favour the runtime
   * that degrades less under oversubscription, not the faster one.
   */
  quietBelow?: number;
}

/** Largest relative difference of the outputs accepted: beyond it the export is wrong, not rounding. */
const MAX_RELATIVE_ERROR = 1e-3;

/**
 * Idle time between the two runtimes' turns. onnxruntime's intra-op workers spin-wait after a run
 * (measured here: about 40 ms of CPU within the next 100 ms; ours about 0.3 ms), which on 2 cores
 * would take a core from whatever runs next. Both runtimes keep their defaults; the pause and the
 * untimed first run of each turn keep them apart.
 */
export const SETTLE_MS = 100;

/**
 * The share of the last 10 s in which some task on the machine waited for a CPU (Linux PSI,
 * /proc/pressure/cpu), in percent; undefined elsewhere. Recorded with each case: on a shared VM it
 * says whether the figures were taken in a quiet or a busy spell.
 */
function cpuPressure(): number | undefined {
  try {
    const match = /some avg10=([\d.]+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Waits until cpuPressure() < percent, at most maxMs; returns the ms waited. */
export async function waitForQuiet(percent: number, maxMs = 60_000): Promise<number> {
  const start = performance.now();
  while (performance.now() - start < maxMs) {
    const p = cpuPressure();
    if (p === undefined || p < percent) break;
    await sleep(1000);
  }
  return performance.now() - start;
}

export interface Runner {
  run(): Promise<Float32Array>;
}

function ortRunner(ort: Ort, session: OrtSession, data: Float32Array, dims: number[]): Runner {
  const feeds = { [session.inputNames[0]!]: new ort.Tensor('float32', data, dims) };
  const output = session.outputNames[0]!;
  return {
    async run() {
      return (await session.run(feeds))[output]!.data;
    },
  };
}

function compare(ours: Float32Array, theirs: Float32Array): { maxAbsError: number; relError: number } {
  if (ours.length !== theirs.length) throw new Error(`onnx: ${ours.length} outputs from castling-vit, ${theirs.length} from onnxruntime`);
  let maxAbs = 0;
  let scale = 0;
  for (let i = 0; i < ours.length; i++) {
    maxAbs = Math.max(maxAbs, Math.abs(ours[i]! - theirs[i]!));
    scale = Math.max(scale, Math.abs(ours[i]!));
  }
  return { maxAbsError: maxAbs, relError: maxAbs / Math.max(scale, 1e-30) };
}

async function timed(r: Runner): Promise<number> {
  const start = performance.now();
  await r.run();
  return performance.now() - start;
}

/**
 * A runtime's turn in a round: a first run after the idle pause, then the compared run, back to
 * back (steady-state latency: threads awake, caches holding this runtime's data). The first run is
 * kept too: what a request arriving after an idle spell sees.
 */
async function turn(r: Runner): Promise<{ afterIdle: number; steady: number }> {
  const afterIdle = await timed(r);
  const steady = await timed(r);
  await sleep(SETTLE_MS);
  return { afterIdle, steady };
}

function median(values: number[]): number {
  return stats(values).medianMs;
}

/** 'A:3,B:12' sorted by name: the operator types onnxruntime runs, in one JSON-friendly string. */
export function formatOps(ops: Record<string, number>): string {
  return Object.entries(ops)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([op, n]) => `${op}:${n}`)
    .join(',');
}

/** One graph both runtimes run: its input, and a runner of each over an input tensor. */
export interface GraphCase {
  label: string;
  dims: number[];
  /** The input values for a seed (the check uses two, the timing a third). */
  input(seed: number): Float32Array;
  ours(input: Tensor): Runner;
  session: OrtSession;
}

interface RuntimeTurns {
  steady: number[];
  afterIdle: number[];
}

interface CaseMeasurement {
  check: { maxAbsError: number; relError: number };
  ours: RuntimeTurns;
  ort: RuntimeTurns;
  rounds: number;
  /** Median of the per-round ratios ours / onnxruntime. */
  ratio: number;
  cpuPressure: number | undefined;
}

/**
 * The same output from both runtimes first (two inputs, relative error at most MAX_RELATIVE_ERROR,
 * else the export is wrong and this throws), then rounds of one turn each, the order alternating.
 */
export async function measureCase(c: GraphCase, ort: Ort, o: TimingOptions, log: (line: string) => void): Promise<CaseMeasurement> {
  let check = { maxAbsError: 0, relError: 0 };
  for (const seed of [11, 12]) {
    const data = c.input(seed);
    const input = Tensor.fromArray(data, c.dims);
    try {
      const r = compare(await c.ours(input).run(), await ortRunner(ort, c.session, data, c.dims).run());
      if (r.relError > check.relError) check = r;
    } finally {
      input.dispose();
    }
  }
  log(`${c.label}: outputs max abs error ${check.maxAbsError.toExponential(2)}, relative ${check.relError.toExponential(2)}`);
  if (!(check.relError <= MAX_RELATIVE_ERROR)) {
    throw new Error(`onnx: ${c.label}: onnxruntime and castling-vit disagree (relative error ${check.relError.toExponential(2)} > ${MAX_RELATIVE_ERROR}): the export is wrong`);
  }

  const data = c.input(1);
  const input = Tensor.fromArray(data, c.dims);
  try {
    const ours = c.ours(input);
    const theirs = ortRunner(ort, c.session, data, c.dims);
    const warm = [await turn(ours), await turn(theirs)];
    const roundMs = 2 * (warm[0]!.steady + warm[1]!.steady) + 2 * SETTLE_MS;
    const rounds = o.rounds ?? Math.min(31, Math.max(5, Math.round(((o.seconds ?? 15) * 1000) / roundMs)));
    const oursTurns: RuntimeTurns = { steady: [], afterIdle: [] };
    const ortTurns: RuntimeTurns = { steady: [], afterIdle: [] };
    const take = async (runner: Runner, into: RuntimeTurns) => {
      const t = await turn(runner);
      into.steady.push(t.steady);
      into.afterIdle.push(t.afterIdle);
    };
    const pressure: number[] = [];
    let waitedMs = 0;
    for (let r = 0; r < rounds; r++) {
      if (o.quietBelow !== undefined) waitedMs += await waitForQuiet(o.quietBelow);
      if (r % 2 === 0) {
        await take(ours, oursTurns);
        await take(theirs, ortTurns);
      } else {
        await take(theirs, ortTurns);
        await take(ours, oursTurns);
      }
      const p = cpuPressure();
      if (p !== undefined) pressure.push(p);
    }
    if (waitedMs > 1000) log(`${c.label}: waited ${(waitedMs / 1000).toFixed(0)} s in all for the host to quieten (CPU pressure < ${o.quietBelow}%)`);
    const ratio = median(oursTurns.steady.map((t, i) => t / ortTurns.steady[i]!));
    return { check, ours: oursTurns, ort: ortTurns, rounds, ratio, cpuPressure: pressure.length ? median(pressure) : undefined };
  } finally {
    input.dispose();
  }
}

/** The two records of a case, one per runtime, over the same FLOPs (comparable GFLOP/s and shares of the peak). */
export function caseRecords(m: CaseMeasurement, base: BenchRecord, flops: number, version: string, ops: Record<string, number>, images?: number): BenchRecord[] {
  const common = { ...base, rounds: m.rounds, ratioOursOverOrt: m.ratio, ...m.check, cpuPressure: m.cpuPressure };
  const record = (runtime: string, turns: RuntimeTurns): BenchRecord => {
    const s = stats(turns.steady);
    return {
      ...common,
      runtime,
      ...s,
      ...(images === undefined ? {} : { imagesPerSecond: (1000 * images) / s.medianMs }),
      gflops: flops / (s.medianMs * 1e6),
      afterIdleMs: median(turns.afterIdle),
    };
  };
  return [record('castling-vit', m.ours), { ...record(`onnxruntime-node ${version}`, m.ort), ortOps: formatOps(ops) }];
}

export function logTimes(label: string, m: CaseMeasurement, log: (line: string) => void): void {
  const [ours, theirs] = [m.ours, m.ort].map((t) => ({ steady: median(t.steady), afterIdle: median(t.afterIdle) }));
  log(`${label}: castling-vit ${ours!.steady.toFixed(1)} ms, onnxruntime ${theirs!.steady.toFixed(1)} ms, ours/ort ${m.ratio.toFixed(3)} (median of ${m.rounds} rounds); first run after ${SETTLE_MS} ms idle: ${ours!.afterIdle.toFixed(1)} / ${theirs!.afterIdle.toFixed(1)} ms; host CPU pressure ${m.cpuPressure?.toFixed(0) ?? '?'}%`);
}

