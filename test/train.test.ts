// Training: every parameter gradient against finite differences of the float64 reference model,
// steps that lower the loss, determinism, the castling schedule and switch, and bad inputs.
import { describe, expect, it } from 'vitest';

import { AdamW, Tensor, VisionTransformer, type VitConfig } from '../lib/index.js';
import { castlingAt } from '../lib/entry/train.js';
import { randomArray, randomizedModel } from './helpers.js';
import { referenceLoss, thresholdMargin, type ReferenceAux } from './vit_reference.js';

const tiny: Partial<VitConfig> = { imageSize: 6, patchSize: 3, inChannels: 1, numClasses: 3, width: 8, depth: 2, heads: 2, mlpRatio: 2, seed: 3 };

/** Worst |analytic - numeric| / (atol + rtol |numeric|) over every parameter element. */
function checkGradients(model: VisionTransformer, grads: Map<string, Tensor>, images: Float32Array, labels: number[], aux?: ReferenceAux): number {
  const params = new Map([...model.parameters()].map(([k, t]) => [k, Float64Array.from(t.toFloat32Array())]));
  const h = 1e-5;
  let worst = 0;
  for (const [name, values] of params) {
    const analytic = grads.get(name)!.toFloat32Array();
    for (let i = 0; i < values.length; i++) {
      const saved = values[i]!;
      values[i] = saved + h;
      const up = referenceLoss(model.config, params, images, labels, aux);
      values[i] = saved - h;
      const down = referenceLoss(model.config, params, images, labels, aux);
      values[i] = saved;
      const numeric = (up - down) / (2 * h);
      const err = Math.abs(analytic[i]! - numeric) / (2e-4 + 2e-3 * Math.abs(numeric));
      if (err > worst) {
        worst = err;
        if (err > 1) console.log(`${name}[${i}]: analytic ${analytic[i]}, numeric ${numeric}`);
      }
    }
  }
  return worst;
}

describe('gradients', () => {
  for (const [label, extra, aux] of [
    ['softmax', { attention: 'softmax' }, undefined],
    ['castling (tokens), branch off', { attention: 'castling', convKernel: 3 }, undefined],
    ['castling (spatial), branch on with L1', { attention: 'castling', convForm: 'spatial', convKernel: 3 }, { tau: 0.3, l1: 0.05 } as ReferenceAux],
  ] as const) {
    it(`every parameter's gradient matches finite differences of the float64 model (${label})`, async () => {
      const model = randomizedModel({ ...tiny, ...extra }, 0.5);
      const images = randomArray(2 * 36);
      const labels = [2, 0];
      if (aux) {
        // The mask is a step function of the probabilities: move tau until no probability is
        // close enough to it for a finite-difference step (or rounding) to cross it.
        const params = new Map([...model.parameters()].map(([k, t]) => [k, t.toFloat32Array()]));
        for (let i = 0; thresholdMargin(model.config, params, images, 2, aux.tau) < 2e-3 && i < 50; i++) aux.tau *= 1.013;
      }
      if (model.config.attention === 'castling') {
        // Put the branch in the state under test (trainStep drives it; here it is set directly).
        model.setAuxBranch(aux ?? null);
      }
      const { loss, gradients } = await model.computeGradients(Tensor.fromArray(images, [2, 1, 6, 6]), labels);
      const params = new Map([...model.parameters()].map(([k, t]) => [k, t.toFloat32Array()]));
      expect(loss).toBeCloseTo(referenceLoss(model.config, params, images, labels, aux), 4);
      expect(checkGradients(model, gradients, images, labels, aux)).toBeLessThanOrEqual(1);
    });
  }
});

describe('trainStep', () => {
  for (const attention of ['softmax', 'castling'] as const) {
    it(`a few steps lower the loss on a fixed batch (${attention})`, async () => {
      const model = VisionTransformer.create({ ...tiny, attention, width: 16, depth: 2, dropPathRate: 0.1 });
      const opt = new AdamW(model.parameters(), { lr: 3e-3, weightDecay: 0.01, warmupSteps: 2, maxGradNorm: 1 });
      const images = Tensor.fromArray(randomArray(8 * 36), [8, 1, 6, 6]);
      const labels = [0, 1, 2, 0, 1, 2, 0, 1];
      const first = await model.trainStep(images, labels, opt);
      let last = first;
      for (let i = 0; i < 60; i++) last = await model.trainStep(images, labels, opt, { labelSmoothing: 0.1 });
      expect(last.loss).toBeLessThan(first.loss * 0.6);
      expect(last.accuracy).toBeGreaterThan(0.5);
      expect(opt.step).toBe(61);
    });
  }

  it('a disposed optimizer frees its moments and is refused by trainStep', async () => {
    const model = VisionTransformer.create({ ...tiny, attention: 'softmax' });
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    const images = Tensor.fromArray(randomArray(2 * 36), [2, 1, 6, 6]);
    await model.trainStep(images, [0, 1], opt);
    opt.dispose();
    opt.dispose(); // twice is harmless
    expect(opt.disposed).toBe(true);
    expect([...opt.moments.values()].every(({ m, v }) => m.disposed && v.disposed)).toBe(true);
    await expect(model.trainStep(images, [0, 1], opt)).rejects.toThrow(/trainStep: the optimizer has been disposed: make a new AdamW/);
    expect(model.parameters().get('head.weight')!.disposed).toBe(false);
    await model.trainStep(images, [0, 1], new AdamW(model.parameters(), { lr: 1e-3 }));
  });

  it('predict after a step uses the updated weights', async () => {
    // The linear layers keep their weights packed between calls: a step must drop that.
    const model = randomizedModel({ ...tiny, attention: 'castling' }, 0.5);
    const opt = new AdamW(model.parameters(), { lr: 1e-2 });
    const images = Tensor.fromArray(randomArray(4 * 36), [4, 1, 6, 6]);
    const before = (await model.predict(images)).toFloat32Array();
    await model.trainStep(images, [0, 1, 2, 1], opt);
    const after = (await model.predict(images)).toFloat32Array();
    expect(after).not.toEqual(before);
    const copy = VisionTransformer.create(model.config);
    for (const [name, t] of model.parameters()) copy.parameters().get(name)!.set(t.toFloat32Array());
    expect(after).toEqual((await copy.predict(images)).toFloat32Array());
  });

  it('is deterministic for a given seed and thread count', async () => {
    const run = async () => {
      const model = VisionTransformer.create({ ...tiny, attention: 'castling', dropPathRate: 0.2, seed: 11 });
      const opt = new AdamW(model.parameters(), { lr: 1e-3, totalSteps: 4 });
      const images = Tensor.fromArray(Float32Array.from({ length: 4 * 36 }, (_, i) => Math.sin(i)), [4, 1, 6, 6]);
      const losses = [];
      for (let i = 0; i < 4; i++) losses.push((await model.trainStep(images, [0, 1, 2, 1], opt, { castling: { start: 0.25, end: 0.75 } })).loss);
      return { losses, head: model.parameters().get('head.weight')!.toFloat32Array() };
    };
    const a = await run();
    const b = await run();
    expect(b.losses).toEqual(a.losses);
    expect(b.head).toEqual(a.head);
  });

  it('rejects bad labels, images and optimizers clearly', async () => {
    const model = VisionTransformer.create(tiny);
    const opt = new AdamW(model.parameters(), { lr: 1e-3 });
    const images = Tensor.zeros([2, 1, 6, 6]);
    await expect(model.trainStep(images, [0, 3], opt)).rejects.toThrow(/labels\[1\] is 3, expected an integer class from 0 to 2/);
    await expect(model.trainStep(images, [0], opt)).rejects.toThrow(/got 1 labels, expected one per image: \[2\]/);
    await expect(model.trainStep(images, [0, -1], opt)).rejects.toThrow(/labels\[1\] is -1/);
    await expect(model.trainStep(Tensor.zeros([2, 1, 7, 7]), [0, 1], opt)).rejects.toThrow(/images have shape \[2, 1, 7, 7\], expected \[batch, 1, 6, 6\]/);
    const nan = new Float32Array(72);
    nan[40] = Number.POSITIVE_INFINITY;
    await expect(model.trainStep(Tensor.fromArray(nan, [2, 1, 6, 6]), [0, 1], opt)).rejects.toThrow(/trainStep: images must be finite: element 40 is Infinity/);
    expect(opt.step).toBe(0);
    const other = VisionTransformer.create(tiny);
    await expect(model.trainStep(images, [0, 1], new AdamW(other.parameters(), { lr: 1e-3 }))).rejects.toThrow(/optimizer was not made from this model's parameters/);
    expect(() => new AdamW(model.parameters(), { lr: -1 })).toThrow(/lr is -1, expected a positive number/);
    await expect(model.trainStep(images, ['0', 1] as never, opt)).rejects.toThrow(/labels\[0\] is "0" \(string\), expected an integer class/);
    await expect(model.trainStep(images, undefined as never, opt)).rejects.toThrow(/labels are undefined, expected an array of class indices/);
    await expect(model.trainStep(images, [0, 1], undefined as never)).rejects.toThrow(/the optimizer is undefined, expected new AdamW/);
    expect(() => new AdamW(model.parameters(), undefined as never)).toThrow(/AdamW: expected options \{ lr/);
    expect(() => new AdamW(model.parameters(), { lr: 1e-3, warmupSteps: -1 })).toThrow(/warmupSteps is -1, expected an integer >= 0/);
    expect(() => new AdamW(model.parameters(), { lr: 1e-3, minLr: 1e-2 })).toThrow(/minLr is 0.01, expected a number from 0 to lr/);
    expect(() => new AdamW(model.parameters(), { lr: 1e-3, maxGradNorm: Infinity })).toThrow(/maxGradNorm is Infinity/);
    expect((await model.trainStep(images, Int32Array.from([0, 1]), opt)).loss).toBeGreaterThan(0);
  });
});

describe('the castling schedule and switch', () => {
  it('tau stays at tau0, ramps to 1, and the branch is off after the end', () => {
    expect(castlingAt(0.1)).toEqual({ active: true, tau: 0.02, l1: 0 });
    expect(castlingAt(0.7, { tau0: 0.02, start: 0.5, end: 0.9 }).tau).toBeCloseTo(0.02 + 0.98 * 0.5);
    expect(castlingAt(0.9).active).toBe(false);
    expect(() => castlingAt(0.5, { start: 0.8, end: 0.2 })).toThrow(/start <= end/);
  });

  it('before the end the branch changes the output; after it, the switch is exact', async () => {
    const model = randomizedModel({ ...tiny, attention: 'castling', width: 16 }, 0.5);
    const images = Tensor.fromArray(randomArray(3 * 36), [3, 1, 6, 6]);
    // A low threshold keeps many entries: the branch contributes.
    model.setAuxBranch({ tau: 0.05, l1: 0 });
    const withBranch = (await model.predict(images)).toFloat32Array();
    // Train through the schedule's end: from then on the branch is not computed.
    const opt = new AdamW(model.parameters(), { lr: 1e-3, totalSteps: 4 });
    const schedule = { tau0: 0.05, start: 0.25, end: 0.5 };
    const taus: Array<number | null> = [];
    for (let i = 0; i < 4; i++) taus.push((await model.trainStep(images, [0, 1, 2], opt, { castling: schedule })).tau);
    expect(taus[0]).toBe(0.05);
    expect(taus[1]).toBe(0.05);
    expect(taus[2]).toBeNull();
    expect(model.auxTau).toBeNull();
    const ended = (await model.predict(images)).toFloat32Array();
    model.castle();
    expect(model.castled).toBe(true);
    const castled = (await model.predict(images)).toFloat32Array();
    expect(castled).toEqual(ended); // bit for bit
    // And the branch did matter before: the same weights with the branch on differ.
    expect(() => model.setAuxBranch({ tau: 0.05, l1: 0 })).toThrow(/castled; the auxiliary branch is gone for good/);
    const twin = VisionTransformer.create({ ...model.config, castlingForm: 'training' }); // (castled, its config says inference)
    for (const [name, t] of model.parameters()) twin.parameters().get(name)!.set(t.toFloat32Array());
    twin.setAuxBranch({ tau: 0.05, l1: 0 });
    expect((await twin.predict(images)).toFloat32Array()).not.toEqual(castled);
    expect(withBranch).not.toEqual(castled);
  });
});
