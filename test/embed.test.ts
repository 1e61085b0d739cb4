// model.embed: the class token after the final LayerNorm (the head's input). With an identity head
// (numClasses = width, head.weight = I, bias 0) the logits are the embeddings exactly, so both
// are checked against the float64 reference model; a trained head's logits are e W^T + b.
import { describe, expect, it } from 'vitest';

import { Tensor, type VitConfig } from '../lib/index.js';
import { expectClose, randomArray, randomizedModel } from './helpers.js';
import { referenceForward } from './vit_reference.js';

const tiny: Partial<VitConfig> = { imageSize: 12, patchSize: 4, inChannels: 2, numClasses: 24, width: 24, depth: 2, heads: 3, mlpRatio: 2, seed: 7 };

describe('model.embed', () => {
  for (const attention of ['softmax', 'castling', 'sparsifiner'] as const) {
    it(`gives the head's input, as the float64 reference computes it (${attention})`, async () => {
      const model = randomizedModel({ ...tiny, attention, ...(attention === 'sparsifiner' ? { keepRate: 0.5 } : {}) });
      if (attention === 'castling') model.castle();
      const images = Tensor.fromArray(randomArray(3 * 2 * 12 * 12), [3, 2, 12, 12]);
      const embeddings = await model.embed(images);
      expect(embeddings.shape).toEqual([3, 24]);
      // The logits of the trained head from the embeddings, in float64.
      const e = embeddings.toFloat32Array();
      const w = model.parameters().get('head.weight')!.toFloat32Array();
      const b = model.parameters().get('head.bias')!.toFloat32Array();
      const fromEmbeddings = new Float64Array(3 * 24);
      for (let i = 0; i < 3; i++) for (let k = 0; k < 24; k++) {
        let sum = b[k]!;
        for (let c = 0; c < 24; c++) sum += e[i * 24 + c]! * w[k * 24 + c]!;
        fromEmbeddings[i * 24 + k] = sum;
      }
      expectClose((await model.predict(images)).toFloat32Array(), fromEmbeddings, 1e-5, 1e-5, 'logits from the embeddings');
      // An identity head: the logits are the embeddings, and the reference's logits are its embeddings.
      model.parameters().get('head.weight')!.set(Float32Array.from({ length: 24 * 24 }, (_, i) => (i % 25 === 0 ? 1 : 0)));
      model.parameters().get('head.bias')!.set(new Float32Array(24));
      expect((await model.predict(images)).toFloat32Array()).toEqual(e);
      const params = new Map([...model.parameters()].map(([name, t]) => [name, t.toFloat32Array()]));
      // (The float64 reference model has softmax and linear-angular attention; the Sparsifiner's
      // is checked op by op in sparsifiner_model.test.ts.)
      if (attention !== 'sparsifiner') expectClose(e, referenceForward(model.config, params, images.toFloat32Array(), 3), 2e-4, 2e-4, 'embeddings against float64');
    });
  }

  it('checks its images as predict does', async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    await expect(model.embed(Tensor.zeros([1, 2, 12, 11]))).rejects.toThrow(/embed: images have shape \[1, 2, 12, 11\], expected \[batch, 2, 12, 12\]/);
    await expect(model.embed(Tensor.fromArray(new Float32Array(288).fill(Number.NaN), [1, 2, 12, 12]))).rejects.toThrow(/embed: images must be finite/);
    await expect(model.embed(Tensor.zeros([1, 2, 12, 12]), { signal: AbortSignal.abort() })).rejects.toThrow(/aborted/);
  });
});
