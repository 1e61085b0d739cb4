// Gradient accumulation (trainStep's microBatch): a batch run as micro-batches of 1, 2 or 3 images
// gives the same update as the whole batch in one pass (clipping on and off, drop-path, label
// smoothing, the castling branch with its L1 term, Sparsifiner's two stages), deterministically,
// and bad values are refused clearly.
import { describe, expect, it } from 'vitest';

import { AdamW, Tensor, VisionTransformer, type AdamWOptions, type TrainStepOptions, type VitConfig } from '../lib/index.js';
import { expectClose, randomArray, randomizedModel } from './helpers.js';

const tiny: Partial<VitConfig> = { imageSize: 6, patchSize: 3, inChannels: 1, numClasses: 3, width: 8, depth: 2, heads: 2, mlpRatio: 2, seed: 3 };
const sparseTiny: Partial<VitConfig> = { imageSize: 12, patchSize: 3, inChannels: 1, numClasses: 4, width: 16, depth: 2, heads: 2, mlpRatio: 2, seed: 5 };

// eps = 1 keeps Adam's first step about linear in the gradient (with a small eps it would be
// lr * sign(g), blind to the gradient's size), so a wrongly weighted sum would show.
const adam: AdamWOptions = { lr: 0.05, eps: 1, weightDecay: 0.01 };

/** Two steps on copies of `source`: one batch in one pass, and in micro-batches; returns both. */
async function compare(source: VisionTransformer, images: Tensor, labels: number[], micro: number, optimizer: AdamWOptions, options: TrainStepOptions, prepare?: (m: VisionTransformer) => void) {
  const run = async (microBatch?: number) => {
    const model = VisionTransformer.from(source, {});
    prepare?.(model);
    const opt = new AdamW(model.parameters(), optimizer);
    const results = [];
    for (let i = 0; i < 2; i++) results.push(await model.trainStep(images, labels, opt, { ...options, microBatch }));
    expect(opt.step).toBe(2);
    return { results, params: model.parameters() };
  };
  return { full: await run(), chunked: await run(micro) };
}

function expectSameStep(full: Awaited<ReturnType<typeof compare>>['full'], chunked: typeof full): void {
  full.results.forEach((r, i) => {
    expect(chunked.results[i]!.loss).toBeCloseTo(r.loss, 5);
    expect(Math.abs(chunked.results[i]!.loss - r.loss)).toBeLessThanOrEqual(1e-5 * Math.abs(r.loss));
    if (Number.isNaN(r.accuracy)) expect(chunked.results[i]!.accuracy).toBeNaN();
    else expect(chunked.results[i]!.accuracy).toBe(r.accuracy);
    expect(chunked.results[i]!.lr).toBe(r.lr);
    expect(chunked.results[i]!.tau).toBe(r.tau);
  });
  for (const [name, t] of full.params) expectClose(chunked.params.get(name)!.toFloat32Array(), t.toFloat32Array(), 1e-7, 1e-5, name);
}

describe('trainStep with microBatch', () => {
  const images = Tensor.fromArray(randomArray(6 * 36), [6, 1, 6, 6]);
  const labels = [0, 2, 1, 1, 0, 2];
  for (const [label, extra, aux] of [
    ['softmax', { attention: 'softmax' }, null],
    ['castling, branch on with L1', { attention: 'castling', convKernel: 3 }, { tau: 0.25, l1: 0.5 }],
    ['castling, branch off', { attention: 'castling', convForm: 'spatial', convKernel: 3 }, null],
  ] as const) {
    for (const maxGradNorm of [0.01, 0]) {
      it(`micro-batches of 1, 2 and 3 give the full batch's update (${label}, ${maxGradNorm ? 'clipped' : 'no clipping'})`, async () => {
        const source = randomizedModel({ ...tiny, ...extra, dropPathRate: 0.3 }, 0.5);
        if (maxGradNorm) {
          // The clipping is active: the batch's gradient norm is well above the limit.
          const { gradients } = await source.computeGradients(images, labels);
          const norm = Math.sqrt([...gradients.values()].reduce((a, g) => a + g.toFloat32Array().reduce((s, v) => s + v * v, 0), 0));
          expect(norm).toBeGreaterThan(2 * maxGradNorm);
        }
        const prepare = (m: VisionTransformer) => (extra.attention === 'castling' ? m.setAuxBranch(aux) : undefined);
        for (const micro of [1, 2, 3, 4]) {
          const { full, chunked } = await compare(source, images, labels, micro, { ...adam, maxGradNorm }, { labelSmoothing: 0.1 }, prepare);
          expectSameStep(full, chunked);
        }
      });
    }
  }

  it('follows the castling schedule as the full batch does', async () => {
    const source = randomizedModel({ ...tiny, attention: 'castling', convKernel: 3 }, 0.5);
    const { full, chunked } = await compare(source, images, labels, 4, { ...adam, totalSteps: 4, maxGradNorm: 0.1 }, { castling: { tau0: 0.1, start: 0.25, end: 0.75, l1: 0.02 } });
    expect(full.results.map((r) => r.tau)).toEqual([0.1, 0.1]);
    expectSameStep(full, chunked);
  });

  it('Sparsifiner: stage 1 (reconstruction) and stage 2 with distillation accumulate as the full batch', async () => {
    const dense = randomizedModel({ ...sparseTiny, attention: 'softmax' }, 0.5);
    const source = VisionTransformer.from(dense, { attention: 'sparsifiner', keepRate: 0.5 });
    const sparseImages = Tensor.fromArray(randomArray(5 * 144), [5, 1, 12, 12]);
    const sparseLabels = [0, 1, 2, 3, 1];
    const stage1 = await compare(source, sparseImages, sparseLabels, 2, { lr: 1e-2, eps: 1, weightDecay: 0, maxGradNorm: 0.5 }, { stage: 'reconstruction' });
    expectSameStep(stage1.full, stage1.chunked);
    const stage2 = await compare(source, sparseImages, sparseLabels, 3, { ...adam, maxGradNorm: 1 }, { distillation: { teacher: dense, weight: 0.5, temperature: 2 } });
    expectSameStep(stage2.full, stage2.chunked);
  });

  it('is deterministic for a given seed and thread count', async () => {
    const run = async () => {
      const model = VisionTransformer.create({ ...tiny, attention: 'castling', dropPathRate: 0.2, seed: 11 });
      const opt = new AdamW(model.parameters(), { lr: 1e-3, totalSteps: 4, maxGradNorm: 1 });
      const losses = [];
      for (let i = 0; i < 4; i++) losses.push((await model.trainStep(images, labels, opt, { microBatch: 4, castling: { start: 0.25, end: 0.75 } })).loss);
      return { losses, head: model.parameters().get('head.weight')!.toFloat32Array() };
    };
    const a = await run();
    const b = await run();
    expect(b.losses).toEqual(a.losses);
    expect(b.head).toEqual(a.head);
  });

  it('rejects bad values clearly, and reports a non-finite image by its index in the batch', async () => {
    const model = VisionTransformer.create(tiny);
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    for (const bad of [0, -2, 1.5, Number.NaN, Number.POSITIVE_INFINITY, '2']) {
      const shown = typeof bad === 'string' ? '"2"' : String(bad);
      await expect(model.trainStep(images, labels, opt, { microBatch: bad as number })).rejects.toThrow(`trainStep: microBatch is ${shown}, expected a positive integer (the most images per forward and backward pass)`);
    }
    const nan = randomArray(6 * 36);
    nan[4 * 36 + 5] = Number.POSITIVE_INFINITY;
    await expect(model.trainStep(Tensor.fromArray(nan, [6, 1, 6, 6]), labels, opt, { microBatch: 2 })).rejects.toThrow(`trainStep: images must be finite: element ${4 * 36 + 5} is Infinity`);
    expect(opt.step).toBe(0);
    // A micro-batch as large as the batch, or larger, is the ordinary step.
    const result = await model.trainStep(images, labels, opt, { microBatch: 64 });
    expect(Number.isFinite(result.loss)).toBe(true);
    expect(opt.step).toBe(1);
  });
});
