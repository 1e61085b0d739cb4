// The benchmark-only addon (castling_vit_bench.node): what the shipped addon must not contain, and
// the measured FMA peak (bench/peak.ts) on every CPU path this machine supports.
import { readFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { describe, expect, it } from 'vitest';

import { benchAddon, benchAddonPath } from '../bench/bench_addon.js';
import { measurePeak } from '../bench/peak.js';
import { backendInfo } from '../lib/index.js';
import { native, packageRoot } from '../lib/native.js';

const BENCH_ONLY = ['timeGemm', 'measureFmaPeak', 'timeMicroKernel'];

/** How many cores were at least 90% idle over the next `ms` milliseconds. */
async function idleCores(ms: number): Promise<number> {
  const before = cpus();
  await sleep(ms);
  return cpus().filter((cpu, i) => {
    const was = before[i]!.times;
    const total = Object.values(cpu.times).reduce((a, b) => a + b, 0) - Object.values(was).reduce((a, b) => a + b, 0);
    return total > 0 && (cpu.times.idle - was.idle) / total >= 0.9;
  }).length;
}

describe('the shipped addon', () => {
  it('exports no benchmark-only function', () => {
    for (const name of BENCH_ONLY) expect(Object.keys(native)).not.toContain(name);
  });

  it('has no benchmark-only code in its binary', (context) => {
    const path = process.env.CASTLING_ADDON_PATH ?? join(packageRoot(), 'build', 'Release', 'castling_vit.node');
    let binary: Buffer;
    try {
      binary = readFileSync(path);
    } catch {
      return context.skip(`no local build at ${path} (a prebuilt binary is loaded)`);
    }
    // The exported names are string literals of the code that registers them.
    for (const name of BENCH_ONLY) expect(binary.includes(name), `${name} in ${path}`).toBe(false);
  });
});

describe('the benchmark addon', () => {
  it('is where bench/ looks for it, and has the benchmark functions', () => {
    expect(benchAddonPath()).toMatch(/castling_vit_bench\.node$/);
    for (const name of BENCH_ONLY) expect(typeof (benchAddon() as unknown as Record<string, unknown>)[name]).toBe('function');
  });

  it('refuses bad options with a message saying what it expected', async () => {
    // The checks throw before any Promise is made; async turns that into a rejection here.
    const peak = async (options: object) => benchAddon().measureFmaPeak(options);
    await expect(peak({ isa: 'sse' })).rejects.toThrow(/unknown CPU path 'sse': expected one of scalar, avx2, avx512/);
    await expect(peak({ threads: 0 })).rejects.toThrow(/'threads' is 0: expected an integer from 1/);
    await expect(peak({ ms: 0 })).rejects.toThrow(/ms must be from 1 to 60000, got 0/);
    await expect(peak({ ms: Number.NaN })).rejects.toThrow(/'ms' is nan: expected a finite number/);
    await expect(peak({ ms: '5' })).rejects.toThrow(/ms must be a number/);
    await expect(peak({ count: 3 })).rejects.toThrow(/unknown option 'count' \(expected isa, threads, ms\)/);
  });

  it('times the micro-kernel alone, packed and in place, at its tile, refusing unknown options', async () => {
    const rate = await benchAddon().timeMicroKernel({ isa: 'scalar', ms: 5 });
    expect(rate).toMatchObject({ mr: 4, nr: 8, kc: 256, prefetchesB: false }); // the portable path has none
    // One thread: more than a multiply-add per cycle at 0.5 GHz, less than 64 flops a cycle at 6 GHz.
    for (const gflops of [rate.packedGflops, rate.directGflops]) expect(gflops).toBeGreaterThan(1), expect(gflops).toBeLessThan(64 * 6);
    // The checks throw before any Promise is made; async turns that into a rejection here.
    const micro = async (options: object) => benchAddon().timeMicroKernel(options);
    await expect(micro({ isa: 'sse' })).rejects.toThrow(/unknown CPU path 'sse'/);
    await expect(micro({ ms: 0 })).rejects.toThrow(/ms must be from 1 to 60000, got 0/);
    await expect(micro({ ms: '5' })).rejects.toThrow(/ms must be a number/);
    await expect(micro({ kc: 3 })).rejects.toThrow(/unknown option 'kc' \(expected isa, ms\)/);
  });

  it('times a product with B packed per call or beforehand, refusing a packedB that is not a boolean', async () => {
    const gemm = async (options: object) => benchAddon().timeGemm({ M: 13, N: 37, K: 29, transB: true, threads: 1, repeats: 2, ...options });
    for (const packedB of [false, true]) {
      const times = await gemm({ packedB, bCopies: 3 });
      expect(times).toHaveLength(2);
      for (const ms of times) expect(ms).toBeGreaterThanOrEqual(0);
    }
    await expect(gemm({ packedB: 'yes' })).rejects.toThrow(/packedB/);
  });
});

describe('measurePeak', () => {
  for (const isa of ['scalar', 'avx2', 'avx512'] as const) {
    it(`gives a plausible GFLOP/s for one thread on ${isa}`, async (context) => {
      if (!backendInfo().supportedIsas.includes(isa)) return context.skip(`this CPU has no ${isa}`);
      const gflops = await measurePeak(isa, 1, 50);
      // One core: at least a multiply-add per cycle at 0.5 GHz, at most 64 flops (two 16-lane
      // FMA units) per cycle at 6 GHz.
      expect(gflops).toBeGreaterThan(1);
      expect(gflops).toBeLessThan(64 * 6);
    });
  }

  it('scales with threads: two threads give more than 1.5 times one when two cores are idle', async (context) => {
    if (process.env.CASTLING_SANITIZERS) return context.skip('timing ratios are not checked under the sanitizers');
    if (cpus().length < 2) return context.skip('one CPU');
    const isa = backendInfo().isa;
    // Interleaved rounds, the best ratio: another process taking a core for a moment should not
    // fail the test, and a pool that runs its workers one after another always would.
    let best = 0;
    for (let round = 0; round < 3; round++) {
      if ((await idleCores(200)) < 2) continue;
      const one = await measurePeak(isa, 1, 100);
      const two = await measurePeak(isa, 2, 100);
      best = Math.max(best, two / one);
    }
    if (best === 0) return context.skip('fewer than two idle cores in every round (a busy machine)');
    expect(best).toBeGreaterThan(1.5);
  });
});
