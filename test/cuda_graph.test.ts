// config.cudaGraph: predict and embed of a CUDA model as a CUDA graph per batch size
// (native/cuda/cuda_graph.h), bit for bit the plain run's results; bad images rejected as
// before; a plan whose op waits for the device (Sparsifiner's) runs uncaptured. The config checks
// run everywhere; the models wherever CUDA is available (in CI on the addon built on the CUDA
// emulator: npm run test:cuda-emulation).
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, cudaAvailable, presets, resolveConfig, type VitConfig } from '../lib/index.js';
import type { CompiledPlan } from '../lib/plan.js';
import { randomArray, randomizedModel, scratchDirectory } from './helpers.js';

const cuda = cudaAvailable();
const skipReason = cuda.available ? '' : ` (skipped: ${cuda.reason})`;
const dir = scratchDirectory('castling-cuda-graph-');

const tiny: Partial<VitConfig> = { ...presets.digits, imageSize: 16, patchSize: 4, width: 24, depth: 2, heads: 2, mlpRatio: 2, numClasses: 3, seed: 3 };

function images(batch: number): Tensor {
  return Tensor.fromArray(randomArray(batch * 16 * 16), [batch, 1, 16, 16]);
}

/** How many CUDA graph captures the model's cached plans made (white-box: the plans are private). */
function captures(model: VisionTransformer): number {
  const plans = (model as unknown as { plans: Map<string, CompiledPlan> }).plans;
  return [...plans.values()].reduce((n, plan) => n + plan.graphCaptures, 0);
}

/** The same random weights twice on the device: as a graph, and plainly. */
async function pair(config: Partial<VitConfig>, name: string): Promise<[VisionTransformer, VisionTransformer]> {
  const path = join(dir, `${name}.safetensors`);
  const source = randomizedModel({ ...tiny, ...config }, 0.3);
  await source.save(path);
  source.dispose();
  return [await VisionTransformer.load(path, { config: { device: 'cuda', cudaGraph: true } }), await VisionTransformer.load(path, { config: { device: 'cuda' } })];
}

describe('config.cudaGraph', () => {
  it('is a boolean, for device cuda', () => {
    expect(() => resolveConfig({ ...tiny, device: 'cuda', cudaGraph: 'yes' as never })).toThrow(/config\.cudaGraph is "yes", expected true or false/);
    expect(() => resolveConfig({ ...tiny, cudaGraph: true })).toThrow(/config\.cudaGraph is true on device 'cpu': CUDA graphs run on device 'cuda' only/);
    expect(resolveConfig(tiny).cudaGraph).toBe(false);
  });
});

describe.skipIf(!cuda.available)(`CUDA graphs of a model's passes${skipReason}`, () => {
  it('predict and embed replay bit for bit what the plain run gives, for each batch size', async () => {
    const [graphed, plain] = await pair({ attention: 'castling', castlingForm: 'inference' }, 'castling');
    const inputs = [images(3), images(3), images(2), images(3)];
    const first = await graphed.predict(inputs[0]!);
    for (const x of inputs) {
      const [a, b] = [await graphed.predict(x), await plain.predict(x)];
      expect(a.toFloat32Array()).toEqual(b.toFloat32Array());
      const [ea, eb] = [await graphed.embed(x), await plain.embed(x)];
      expect(ea.toFloat32Array()).toEqual(eb.toFloat32Array());
      for (const t of [a, b, ea, eb]) t.dispose();
    }
    // One capture per plan (batch sizes 3 and 2, predict and embed), the other passes replays.
    expect([captures(graphed), captures(plain)]).toEqual([4, 0]);
    // A result is the caller's own: the later replays did not overwrite it.
    const again = await plain.predict(inputs[0]!);
    expect(first.toFloat32Array()).toEqual(again.toFloat32Array());
    for (const t of [...inputs, first, again]) t.dispose();
    for (const m of [graphed, plain]) m.dispose();
  });

  it('rejects images that are not finite as the plain run does', async () => {
    const [graphed, plain] = await pair({ attention: 'softmax' }, 'softmax');
    const good = images(2);
    (await graphed.predict(good)).dispose(); // captured with finite images
    const values = randomArray(2 * 16 * 16);
    values[300] = Number.NaN;
    const bad = Tensor.fromArray(values, [2, 1, 16, 16]);
    for (const model of [graphed, plain]) await expect(model.predict(bad)).rejects.toThrow('predict: images must be finite: element 300 is NaN');
    // The error was reported once: the next pass is clean.
    const [a, b] = [await graphed.predict(good), await plain.predict(good)];
    expect(a.toFloat32Array()).toEqual(b.toFloat32Array());
    for (const t of [good, bad, a, b]) t.dispose();
    for (const m of [graphed, plain]) m.dispose();
  });

  it('runs a pass whose op waits for the device (sparse attention) uncaptured', async () => {
    const [graphed, plain] = await pair({ attention: 'sparsifiner', keepRate: 0.5 }, 'sparsifiner');
    const x = images(2);
    for (let i = 0; i < 2; i++) {
      const [a, b] = [await graphed.predict(x), await plain.predict(x)];
      expect(a.toFloat32Array()).toEqual(b.toFloat32Array());
      for (const t of [a, b]) t.dispose();
    }
    expect(captures(graphed)).toBe(0);
    x.dispose();
    for (const m of [graphed, plain]) m.dispose();
  });
});
