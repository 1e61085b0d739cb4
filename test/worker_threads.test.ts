// The package in worker_threads (a service's pool of workers): each worker loads the addon and
// gets the main thread's results, and terminating a worker in the middle of a predict, a
// trainStep or an op ends that worker alone (an op finishing into a terminated worker used to
// abort the whole process). Run in a child process, since an abort would end the test runner.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, presets } from '../lib/index.js';

const indexJs = fileURLToPath(new URL('../dist/lib/index.js', import.meta.url));
const script = fileURLToPath(new URL('./fixtures/worker_threads.mjs', import.meta.url));

describe('worker_threads', () => {
  it('workers predict as the main thread does, and terminating busy ones leaves the process running', async () => {
    const run = spawnSync(process.execPath, [script, indexJs], { encoding: 'utf8', timeout: 120_000 });
    expect(run.status, `${run.stderr}\n(signal ${run.signal})`).toBe(0);
    const { logits, terminated } = JSON.parse(run.stdout) as { logits: number[][]; terminated: Record<string, number> };
    expect(terminated).toEqual({ predict: 3, trainStep: 3, op: 3, 'sync op': 3 });
    const model = VisionTransformer.create({ ...presets.digits, attention: 'castling', seed: 1 });
    const mine = await model.predict(Tensor.fromArray(new Float32Array(784).fill(0.5), [1, 1, 28, 28]));
    for (const theirs of logits) expect(theirs).toEqual(Array.from(mine.toFloat32Array()));
    model.dispose();
  });
});
