// Shared test helpers: fresh random inputs, the CPU paths to run on, a tolerance check that
// reports the worst element, and scratch directories that do not outlive their test file.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, expect } from 'vitest';

import { VisionTransformer, backendInfo, setCpuPath, type CpuPath, type VitConfig } from '../lib/index.js';

/** A seeded generator per test run; the seed is printed so that a failure can be replayed. */
const seed = Number(process.env.CASTLING_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
/** The run's seed, for generators of their own (fast-check). */
export const testSeed = seed;
let state = seed >>> 0;
console.log(`random seed ${seed} (set CASTLING_TEST_SEED to replay)`);

export function random(): number {
  // mulberry32
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

export function randomArray(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = (random() * 2 - 1) * scale;
  return out;
}

/**
 * A model with fresh random values in every parameter (the initialisation leaves biases at zero
 * and norms at one, which would hide mistakes in their use), uniform in [-scale, scale].
 */
export function randomizedModel(config: Partial<VitConfig>, scale = 0.5): VisionTransformer {
  const model = VisionTransformer.create(config);
  for (const t of model.parameters().values()) t.set(randomArray(t.size, scale));
  return model;
}

/** Every CPU path this machine can run (all three on an AVX-512 machine). */
export const cpuPaths: CpuPath[] = backendInfo().supportedCpuPaths;

/** Runs `body` once per CPU path, restoring the best path afterwards. */
export async function onEachPath(body: (path: CpuPath) => void | Promise<void>): Promise<void> {
  const best = cpuPaths[cpuPaths.length - 1]!;
  try {
    for (const path of cpuPaths) {
      setCpuPath(path);
      await body(path);
    }
  } finally {
    setCpuPath(best);
  }
}

/** Expects |got - want| <= atol + rtol |want| everywhere, naming the worst element otherwise. */
export function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, atol: number, rtol: number, label = ''): void {
  expect(got.length, `${label} length`).toBe(want.length);
  let worst = 0;
  let worstIndex = -1;
  for (let i = 0; i < want.length; i++) {
    const ratio = Math.abs(got[i]! - want[i]!) / (atol + rtol * Math.abs(want[i]!));
    if (!(ratio <= worst)) {
      worst = ratio;
      worstIndex = i;
      if (Number.isNaN(ratio)) break;
    }
  }
  if (!(worst <= 1)) {
    throw new Error(`${label}: element ${worstIndex} is ${got[worstIndex]}, expected ${want[worstIndex]} (error ${worst.toFixed(2)}x the tolerance)`);
  }
}

/**
 * max |got - want| / max |want|, the scale at least `floor` (values near zero, gradients say,
 * then compare on an absolute floor); Infinity when the lengths differ.
 */
export function relativeError(got: ArrayLike<number>, want: ArrayLike<number>, floor = 0): number {
  if (got.length !== want.length) return Infinity;
  let diff = 0;
  let scale = floor;
  for (let i = 0; i < want.length; i++) {
    diff = Math.max(diff, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  return diff / scale;
}

/**
 * A fresh directory in the system's temporary one, removed with its contents when the test file
 * has run (call it at the top of a file, not inside a test; a file whose tests are all skipped
 * runs no afterAll, so there make the directory inside the test). Some tests write hundreds of MB
 * of model files; left behind, every run of the suite added about half a GB to the temporary
 * directory.
 */
export function scratchDirectory(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
