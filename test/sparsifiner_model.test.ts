// Sparsifiner as a third attention kind of the ViT: at keep rate 1 it is exactly dense softmax
// attention; a softmax model converts into one (predictor fresh); stage 1 (reconstruction) trains
// only the predictors and lowers their loss; stage 2 fine-tunes with sparse attention, with
// optional distillation from the dense model.

import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { AdamW, Tensor, VisionTransformer, type VitConfig } from '../lib/index.js';
import { expectClose, randomArray, randomizedModel, scratchDirectory } from './helpers.js';

const dir = scratchDirectory('castling-sparsifiner-');
const tiny: Partial<VitConfig> = { imageSize: 12, patchSize: 3, inChannels: 1, numClasses: 4, width: 16, depth: 2, heads: 2, mlpRatio: 2, seed: 5 };

describe('sparsifiner models', () => {
  it('at keep rate 1 predict and gradients equal the softmax model with the same weights', async () => {
    const dense = randomizedModel({ ...tiny, attention: 'softmax' }, 0.4);
    const sparse = VisionTransformer.from(dense, { attention: 'sparsifiner', keepRate: 1 });
    expect(sparse.loadReport.initialised).toContain('blocks.1.attn.predictor.P');
    expect(sparse.loadReport.initialised).toHaveLength(2 * 6);
    const images = Tensor.fromArray(randomArray(3 * 144), [3, 1, 12, 12]);
    expectClose((await sparse.predict(images)).toFloat32Array(), (await dense.predict(images)).toFloat32Array(), 1e-5, 1e-4, 'logits');
    const a = await dense.computeGradients(images, [0, 3, 1]);
    const b = await sparse.computeGradients(images, [0, 3, 1]);
    expect(b.loss).toBeCloseTo(a.loss, 5);
    for (const [name, g] of a.gradients) expectClose(b.gradients.get(name)!.toFloat32Array(), g.toFloat32Array(), 1e-5, 1e-3, name);
    // The predictor receives no gradient through its top-k.
    expect(b.gradients.has('blocks.0.attn.predictor.q.weight')).toBe(false);
  });

  it('a lower keep rate changes the output, and the token count is fixed by the config', async () => {
    const dense = randomizedModel({ ...tiny, attention: 'softmax' }, 0.4);
    const sparse = VisionTransformer.from(dense, { attention: 'sparsifiner', keepRate: 0.25 });
    const images = Tensor.fromArray(randomArray(144), [1, 1, 12, 12]);
    expect((await sparse.predict(images)).toFloat32Array()).not.toEqual((await dense.predict(images)).toFloat32Array());
    await expect(sparse.predict(Tensor.zeros([1, 1, 15, 15]))).rejects.toThrow(/expected \[batch, 1, 12, 12\]/);
    expect(() => VisionTransformer.create({ ...tiny, attention: 'sparsifiner', width: 18, heads: 2 })).toThrow(/even head width/);
    expect(() => VisionTransformer.create({ ...tiny, attention: 'sparsifiner', keepRate: 0 })).toThrow(/keepRate is 0/);
  });

  it('stage 1 trains only the predictors and lowers the reconstruction loss', async () => {
    const dense = randomizedModel({ ...tiny, attention: 'softmax' }, 0.4);
    const model = VisionTransformer.from(dense, { attention: 'sparsifiner' });
    const backbone = model.parameters().get('blocks.0.mlp.fc1.weight')!.toFloat32Array();
    const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
    const images = Tensor.fromArray(randomArray(4 * 144), [4, 1, 12, 12]);
    const first = await model.trainStep(images, [0, 1, 2, 3], opt, { stage: 'reconstruction' });
    let last = first;
    for (let i = 0; i < 25; i++) last = await model.trainStep(images, [0, 1, 2, 3], opt, { stage: 'reconstruction' });
    expect(Number.isNaN(first.accuracy)).toBe(true);
    expect(last.loss).toBeLessThan(first.loss * 0.8);
    expect(model.parameters().get('blocks.0.mlp.fc1.weight')!.toFloat32Array()).toEqual(backbone);
    await expect(dense.trainStep(images, [0, 1, 2, 3], new AdamW(dense.parameters(), { lr: 1e-3 }), { stage: 'reconstruction' })).rejects.toThrow(/reconstruction' stage is for sparsifiner models/);
  });

  it('stage 2 fine-tunes with sparse attention and distillation from the dense model, keeping the predictor', async () => {
    const dense = randomizedModel({ ...tiny, attention: 'softmax' }, 0.4);
    const model = VisionTransformer.from(dense, { attention: 'sparsifiner', keepRate: 0.5 });
    const predictor = model.parameters().get('blocks.1.attn.predictor.B')!.toFloat32Array();
    const opt = new AdamW(model.parameters(), { lr: 3e-3 });
    const images = Tensor.fromArray(randomArray(8 * 144), [8, 1, 12, 12]);
    const labels = [0, 1, 2, 3, 0, 1, 2, 3];
    const first = await model.trainStep(images, labels, opt, { distillation: { teacher: dense, weight: 0.5, temperature: 2 } });
    let last = first;
    for (let i = 0; i < 25; i++) last = await model.trainStep(images, labels, opt, { distillation: { teacher: dense, weight: 0.5, temperature: 2 } });
    expect(last.loss).toBeLessThan(first.loss);
    expect(model.parameters().get('blocks.1.attn.predictor.B')!.toFloat32Array()).toEqual(predictor);
  });

  it('threshold selection: below every prediction it is dense attention, above all it keeps one key per query', async () => {
    const dense = randomizedModel({ ...tiny, attention: 'softmax' }, 0.4);
    const images = Tensor.fromArray(randomArray(2 * 144), [2, 1, 12, 12]);
    const all = VisionTransformer.from(dense, { attention: 'sparsifiner', keySelection: 'threshold', selectionThreshold: -1e9 });
    expectClose((await all.predict(images)).toFloat32Array(), (await dense.predict(images)).toFloat32Array(), 1e-5, 1e-4, 'logits');
    const one = VisionTransformer.from(dense, { attention: 'sparsifiner', keySelection: 'threshold', selectionThreshold: 1e9 });
    const single = VisionTransformer.from(one, { keySelection: 'topk', keepRate: 1 / 17 });
    expectClose((await one.predict(images)).toFloat32Array(), (await single.predict(images)).toFloat32Array(), 1e-6, 1e-6, 'one key per query');
    expect(() => VisionTransformer.create({ ...tiny, attention: 'sparsifiner', keySelection: 'top' as 'topk' })).toThrow(/keySelection is 'top', expected 'topk' or 'threshold'/);
    expect(() => VisionTransformer.create({ ...tiny, attention: 'sparsifiner', selectionThreshold: NaN })).toThrow(/selectionThreshold/);
  });

  it('coefficient top-k and a shared basis train in both stages and survive save and load', async () => {
    const dense = randomizedModel({ ...tiny, attention: 'softmax' }, 0.4);
    const model = VisionTransformer.from(dense, { attention: 'sparsifiner', keepRate: 0.5, coefficientKeep: 1, sharedBasis: true });
    expect(model.parameters().has('blocks.0.attn.predictor.P')).toBe(true);
    expect(model.parameters().has('blocks.0.attn.predictor.B')).toBe(false);
    const images = Tensor.fromArray(randomArray(4 * 144), [4, 1, 12, 12]);
    const opt = new AdamW(model.parameters(), { lr: 1e-2, weightDecay: 0 });
    const basis = model.parameters().get('blocks.0.attn.predictor.P')!.toFloat32Array();
    const first = await model.trainStep(images, [0, 1, 2, 3], opt, { stage: 'reconstruction' });
    let last = first;
    for (let i = 0; i < 25; i++) last = await model.trainStep(images, [0, 1, 2, 3], opt, { stage: 'reconstruction' });
    expect(last.loss).toBeLessThan(first.loss);
    expect(model.parameters().get('blocks.0.attn.predictor.P')!.toFloat32Array()).not.toEqual(basis);
    const tune = await model.trainStep(images, [0, 1, 2, 3], new AdamW(model.parameters(), { lr: 1e-3 }));
    expect(Number.isFinite(tune.loss)).toBe(true);
    const path = join(dir, 'sparsifiner.safetensors');
    await model.save(path);
    const loaded = await VisionTransformer.load(path);
    expect(loaded.config).toMatchObject({ coefficientKeep: 1, sharedBasis: true, keySelection: 'topk' });
    expect((await loaded.predict(images)).toFloat32Array()).toEqual((await model.predict(images)).toFloat32Array());
    expect(() => VisionTransformer.create({ ...tiny, attention: 'sparsifiner', coefficientKeep: 3 })).toThrow(/coefficientKeep is 3: expected an integer from 0 \(all\) to r = floor\(N \/ 8\) = 2/);
  });
});
