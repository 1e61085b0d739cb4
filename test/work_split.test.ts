// The thread-scaling model (bench/work_split.ts) on jobs whose schedule is known by hand, and the
// pool's trace that feeds it (native/core/pool_trace.h) on real ops.
import { describe, expect, it } from 'vitest';

import { backendInfo, setThreads, Tensor } from '../lib/index.js';
import { linear } from '../lib/entry/ops.js';
import { native, type PoolTraceRegion } from '../lib/native.js';
import { jobMakespanNs, workSplit } from '../bench/work_split.js';

const job = (pieceNs: number[], o: Partial<PoolTraceRegion> = {}): PoolTraceRegion => ({ dynamic: true, lanes: 64, op: 'x', serialBeforeNs: 0, pieceNs: Float64Array.from(pieceNs), ...o });

describe('the work-split model', () => {
  it('hands dynamic pieces to the first free thread, in order', () => {
    // 3 threads: 5 -> t0, 3 -> t1, 2 -> t2; 2 -> t2 (free at 2, ends 4); 1 -> t1 (free at 3, ends 4); ends at 5.
    expect(jobMakespanNs(job([5, 3, 2, 2, 1]), 3)).toBe(5);
    // One thread: the sum. More threads than pieces: the largest piece.
    expect(jobMakespanNs(job([5, 3, 2, 2, 1]), 1)).toBe(13);
    expect(jobMakespanNs(job([5, 3, 2, 2, 1]), 64)).toBe(5);
  });

  it('gives static index w to lane w % lanes, and never more lanes than the job had', () => {
    // Lanes 2: indices 0, 2, 4 on lane 0 (1 + 1 + 1), 1, 3 on lane 1 (4 + 4).
    expect(jobMakespanNs(job([1, 4, 1, 4, 1], { dynamic: false }), 2)).toBe(8);
    // A job that ran on 2 lanes stays on 2 even on 64 threads.
    expect(jobMakespanNs(job([1, 4, 1, 4, 1], { dynamic: false, lanes: 2 }), 64)).toBe(8);
  });

  it('adds serial sections in full and names the op losing the most', () => {
    const split = workSplit([job([4e6, 4e6, 4e6, 4e6], { op: 'even' }), job([12e6, 1e6, 1e6, 2e6], { op: 'uneven', serialBeforeNs: 2e6 })], 4);
    expect(split.workMs).toBeCloseTo(34);
    expect(split.serialMs).toBeCloseTo(2);
    expect(split.modelMs).toBeCloseTo(4 + 12 + 2);
    expect(split.efficiency).toBeCloseTo(34 / 18 / 4);
    expect(split.losses[0]).toEqual({ op: 'uneven', lostMs: 48 - 16, jobs: 1 });
    expect(split.losses.find((l) => l.op === 'even')!.lostMs).toBeCloseTo(0);
  });
});

describe('the pool trace', () => {
  it('records each parallel job of an op with its pieces, and nothing when off', async () => {
    const before = backendInfo().threads;
    try {
      setThreads(4);
      const x = Tensor.fromArray(Float32Array.from({ length: 197 * 384 }, (_, i) => Math.sin(i)), [197, 384]);
      const w = Tensor.fromArray(Float32Array.from({ length: 1536 * 384 }, (_, i) => Math.cos(i)), [1536, 384]);
      (await linear(x, w)).dispose();
      expect(native.tracePool(false)).toEqual([]); // not recording
      native.tracePool(true);
      (await linear(x, w)).dispose();
      const regions = native.tracePool(false);
      const gemm = regions.filter((r) => r.op === 'linear');
      expect(gemm.length).toBeGreaterThanOrEqual(1);
      // 197 x 1536 x 384 is 232 MFLOP: split over all 4 threads, each piece a real share of the work.
      expect(gemm[0]!.lanes).toBe(4);
      expect(gemm[0]!.pieceNs.length).toBe(4);
      for (const ns of gemm[0]!.pieceNs) expect(ns).toBeGreaterThan(0);
      (await linear(x, w)).dispose();
      expect(native.tracePool(false)).toEqual([]);
      x.dispose();
      w.dispose();
    } finally {
      setThreads(before);
    }
  });
});
