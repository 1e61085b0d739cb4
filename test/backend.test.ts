// CPU dispatch, the thread pool and backendInfo(), including the environment variables read at
// start-up (checked in child processes, since they are read once per process).
import { spawnSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, backendInfo, presets, setCpuPath, setThreads } from '../lib/index.js';
import { matmul } from '../lib/entry/ops.js';
import { randomArray } from './helpers.js';

const indexJs = fileURLToPath(new URL('../dist/lib/index.js', import.meta.url));

function infoWithEnv(env: Record<string, string>): { status: number | null; stdout: string; stderr: string } {
  const script = `import(${JSON.stringify(indexJs)}).then(m => console.log(JSON.stringify(m.backendInfo()))).catch(e => { console.error(e.message); process.exit(3); })`;
  const result = spawnSync(process.execPath, ['-e', script], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

describe('backendInfo', () => {
  it('reports the path, threads, version and CUDA', () => {
    const info = backendInfo();
    expect(info.supportedCpuPaths[0]).toBe('scalar');
    expect(info.supportedCpuPaths).toContain(info.cpuPath);
    // The old names stay for the 0.x releases and say the same.
    expect(info.isa).toBe(info.cpuPath);
    expect(info.supportedIsas).toEqual(info.supportedCpuPaths);
    expect(info.threads).toBeGreaterThanOrEqual(1);
    expect(info.version).toMatch(/^\d+\.\d+\.\d+/);
    if (!info.cuda.available) expect(info.cuda.reason).toMatch(/CUDA/);
  });
});

describe('CPU paths and threads', () => {
  it('CASTLING_CPU forces a path, and an unknown or unsupported one is a clear error', () => {
    for (const path of backendInfo().supportedCpuPaths) {
      const r = infoWithEnv({ CASTLING_CPU: path });
      expect(r.status, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout).cpuPath).toBe(path);
    }
    const bad = infoWithEnv({ CASTLING_CPU: 'neon' });
    expect(bad.status).toBe(3);
    expect(bad.stderr).toMatch(/unknown CPU path 'neon': expected one of scalar, avx2, avx512/);
  });

  it('CASTLING_THREADS sizes the pool', () => {
    const r = infoWithEnv({ CASTLING_THREADS: '3' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).threads).toBe(3);
  });

  it('CASTLING_SPIN_US sets how long idle threads spin, and a bad value is a clear error', () => {
    expect(backendInfo().spinMicroseconds).toBe(process.env.CASTLING_SPIN_US === undefined ? 1000 : Number(process.env.CASTLING_SPIN_US));
    const r = infoWithEnv({ CASTLING_SPIN_US: '0' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).spinMicroseconds).toBe(0);
    for (const bad of ['-1', 'lots', '1000001']) {
      const b = infoWithEnv({ CASTLING_SPIN_US: bad });
      expect(b.status).not.toBe(0);
      expect(b.stderr).toMatch(new RegExp(`CASTLING_SPIN_US=${bad} is not valid: expected an integer from 0 to 1000000`));
    }
  });

  it('CASTLING_CACHE_MB bounds the memory kept for reuse, and a bad value is a clear error', () => {
    const r = infoWithEnv({ CASTLING_CACHE_MB: '64' });
    expect(r.status, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout).cacheLimitBytes).toBe(64 * 1024 * 1024);
    const none = infoWithEnv({ CASTLING_CACHE_MB: '0' });
    expect(JSON.parse(none.stdout).cacheLimitBytes).toBe(0);
    for (const bad of ['-1', '2G', '', '99999999999999999999']) {
      const b = infoWithEnv({ CASTLING_CACHE_MB: bad });
      expect(b.status).not.toBe(0);
      expect(b.stderr).toMatch(new RegExp(`CASTLING_CACHE_MB=${bad} is not valid: expected an integer from 0 to 8796093022208 \\(megabytes\\)`));
    }
  });

  it('asking for a path the CPU lacks throws instead of crashing', () => {
    const missing = (['avx2', 'avx512'] as const).filter((p) => !backendInfo().supportedCpuPaths.includes(p));
    for (const path of missing) expect(() => setCpuPath(path)).toThrow(/not supported by this CPU/);
  });

  it('results do not depend on the thread count', async () => {
    const a = Tensor.fromArray(randomArray(197 * 384), [197, 384]);
    const b = Tensor.fromArray(randomArray(384 * 1152), [384, 1152]);
    const results: Float32Array[] = [];
    // At 64 threads C is split on a 3 x 21 grid: a grid may leave threads out (gemm.cpp chooseGrid).
    for (const threads of [1, 2, 3, 7, 64]) {
      setThreads(threads);
      expect(backendInfo().threads).toBe(threads);
      results.push((await matmul(a, b)).toFloat32Array());
    }
    setThreads(backendInfo().supportedCpuPaths.length > 0 ? 2 : 1);
    // K is not split across threads, so every thread count gives the same bits.
    expect(results[1]).toEqual(results[0]);
    for (const result of results.slice(2)) expect(result).toEqual(results[0]);
  });

  it('concurrent async ops from one event loop all complete correctly', async () => {
    const a = Tensor.fromArray(randomArray(64 * 64), [64, 64]);
    const want = (await matmul(a, a)).toFloat32Array();
    const all = await Promise.all(Array.from({ length: 32 }, () => matmul(a, a)));
    for (const c of all) expect(c.toFloat32Array()).toEqual(want);
  });
});

describe('setThreads while ops run', () => {
  it('ops in flight give the same results: a kernel planned for more threads than the pool has left still computes every part', async () => {
    const model = VisionTransformer.create({ ...presets.digits, attention: 'castling', seed: 1 });
    const images = Tensor.fromArray(randomArray(16 * 784), [16, 1, 28, 28]);
    const want = (await model.predict(images)).toFloat32Array();
    const threadsBefore = backendInfo().threads;
    let changing = true;
    const churn = (async () => {
      for (let i = 0; changing; i++) {
        setThreads(1 + (i % 3));
        await new Promise((resolve) => setTimeout(resolve, 1));
      }
    })();
    try {
      for (let round = 0; round < 40; round++) {
        const logits = await Promise.all([model.predict(images), model.predict(images)]);
        for (const l of logits) expect(l.toFloat32Array()).toEqual(want); // bit for bit: no thread count changes the sums
      }
    } finally {
      changing = false;
      await churn;
      setThreads(threadsBefore);
      model.dispose();
    }
  });
});

describe('async ops', () => {
  it("leave libuv's thread pool to fs, dns and image decoding: a readFile is not queued behind predicts", async () => {
    const model = VisionTransformer.create({ ...presets.deitTiny, attention: 'softmax', seed: 1 });
    // Passes long enough to mean something on any machine: ~60 ms each, timed on the batch itself
    // (one image's time, the first guess, can be off by half either way: a batch of 3 took 33 ms).
    const timePass = async (images: Tensor) => {
      (await model.predict(images)).dispose(); // warm-up: plans recorded, memory cached
      const t0 = performance.now();
      (await model.predict(images)).dispose();
      return performance.now() - t0;
    };
    let count = 1;
    let images = Tensor.zeros([count, 3, 224, 224]);
    for (let passMs = await timePass(images); passMs < 60 && count < 128; passMs = await timePass(images)) {
      count = Math.min(128, Math.ceil((count * 70) / passMs));
      images.dispose();
      images = Tensor.zeros([count, 3, 224, 224]);
    }
    const start = performance.now();
    // More passes than libuv has threads (4): on its pool they would hold every thread.
    const passes = Array.from({ length: 6 }, () => model.predict(images).then((logits) => logits.dispose()));
    const readStart = performance.now();
    await readFile(fileURLToPath(import.meta.url));
    const readMs = performance.now() - readStart;
    await Promise.all(passes);
    const totalMs = performance.now() - start;
    model.dispose();
    expect(totalMs).toBeGreaterThan(150); // the passes are long enough for the check to mean something
    expect(readMs).toBeLessThan(Math.min(100, totalMs / 3));
  });


  it('run off the JavaScript thread: timers keep firing during a long matmul', async ({ skip }) => {
    const n = 1536;
    const a = Tensor.fromArray(randomArray(n * n), [n, n]);
    let last = performance.now();
    let worstGap = 0;
    let ticks = 0;
    const timer = setInterval(() => {
      const now = performance.now();
      worstGap = Math.max(worstGap, now - last);
      last = now;
      ticks++;
    }, 1);
    const start = performance.now();
    // Products in sequence until the work has lasted well beyond any timer slack (200 ms, at least
    // 4 products): a fixed count took 94 ms on a fast machine, too short for the check to mean much.
    for (let i = 0; i < 4 || performance.now() - start < 200; i++) (await matmul(a, a)).dispose();
    const elapsed = performance.now() - start;
    clearInterval(timer);
    // Under the sanitizers (npm run test:sanitizers) the products run, but the timing thresholds
    // are not checked: allocation on the JavaScript thread is instrumented there too, and the
    // worst gap reached 53 ms on a loaded 2-core machine.
    if (process.env.CASTLING_SANITIZERS) skip('timing thresholds are not checked under the sanitizers');
    expect(ticks).toBeGreaterThan(elapsed / 20);
    expect(worstGap).toBeLessThan(Math.min(50, elapsed / 2));
  });
});
