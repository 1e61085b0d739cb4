// model.batcher(): predict requests that arrive while a pass runs go together in the next pass.
// Each caller gets its own images' logits (the ones model.predict gives), a bad request fails
// alone, and the batches hold at most maxBatch images.
import { describe, expect, it } from 'vitest';

import { Tensor, type VitConfig } from '../lib/index.js';
import { BatcherFullError } from '../lib/entry/serve.js';
import { expectClose, randomArray, randomizedModel } from './helpers.js';

const tiny: Partial<VitConfig> = { imageSize: 6, patchSize: 3, inChannels: 1, numClasses: 3, width: 8, depth: 2, heads: 2, mlpRatio: 2, seed: 3 };


const imagesOf = (count: number) => Tensor.fromArray(randomArray(count * 36), [count, 1, 6, 6]);

describe('model.batcher', () => {
  for (const attention of ['softmax', 'castling', 'sparsifiner'] as const) {
    it(`gives each request its own logits, in fewer passes (${attention})`, async () => {
      const model = randomizedModel({ ...tiny, attention, ...(attention === 'sparsifiner' ? { imageSize: 12, keepRate: 0.5 } : {}) });
      const side = model.config.imageSize;
      if (attention === 'castling') model.castle();
      const requests = [1, 3, 1, 2, 1, 1, 4, 1].map((n) => Tensor.fromArray(randomArray(n * side * side), [n, 1, side, side]));
      const alone: Float32Array[] = [];
      for (const images of requests) alone.push((await model.predict(images)).toFloat32Array());
      const batcher = model.batcher({ maxBatch: 5 });
      const logits = await Promise.all(requests.map((images) => batcher.predict(images)));
      logits.forEach((l, i) => {
        expect(l.shape).toEqual([requests[i]!.shape[0], 3]);
        if (attention === 'castling') expectClose(l.toFloat32Array(), alone[i]!, 1e-6, 1e-5, `request ${i}`);
        else expect(l.toFloat32Array()).toEqual(alone[i]);
      });
      // The first request runs alone (the model was free); the others waited and went together,
      // at most 5 images a pass: [3, 1] is 4, then [2, 1, 1], then [4, 1].
      expect(batcher.stats).toEqual({ requests: 8, images: 14, passes: 4 });
    });
  }

  it("with output 'embeddings', gives each request model.embed's rows", async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    const requests = [1, 2, 1].map((n) => imagesOf(n));
    const batcher = model.batcher({ output: 'embeddings' });
    const rows = await Promise.all(requests.map((images) => batcher.predict(images)));
    for (const [i, r] of rows.entries()) {
      expect(r.shape).toEqual([requests[i]!.shape[0], 8]);
      expect(r.toFloat32Array()).toEqual((await model.embed(requests[i]!)).toFloat32Array());
    }
    expect(batcher.stats.passes).toBe(2);
    expect(() => model.batcher({ output: 'features' as 'logits' })).toThrow(/output is "features", expected 'logits' or 'embeddings'/);
  });

  it('a request larger than maxBatch runs alone; a lone request runs at once', async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    const batcher = model.batcher({ maxBatch: 2 });
    const big = imagesOf(5);
    const [bigLogits, small] = await Promise.all([batcher.predict(big), batcher.predict(imagesOf(1))]);
    expect(bigLogits.toFloat32Array()).toEqual((await model.predict(big)).toFloat32Array());
    expect(small.shape).toEqual([1, 3]);
    expect(batcher.stats.passes).toBe(2);
    await batcher.predict(imagesOf(1));
    expect(batcher.stats).toEqual({ requests: 3, images: 7, passes: 3 });
  });

  it('a bad request fails alone: the others in its batch get their logits', async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    const batcher = model.batcher();
    const good = [imagesOf(1), imagesOf(2), imagesOf(1)];
    const nan = Tensor.fromArray(new Float32Array(36).fill(Number.NaN), [1, 1, 6, 6]);
    const results = await Promise.allSettled([batcher.predict(good[0]!), batcher.predict(good[1]!), batcher.predict(nan), batcher.predict(good[2]!)]);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled']);
    expect(((results[2] as PromiseRejectedResult).reason as Error).message).toMatch(/predict: images must be finite/);
    for (const [i, r] of [results[0], results[1], results[3]].entries()) {
      expect((r as PromiseFulfilledResult<Tensor>).value.toFloat32Array()).toEqual((await model.predict(good[i]!)).toFloat32Array());
    }
  });

  it('takes the images as they were when asked: a caller may reuse its tensor', async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    const batcher = model.batcher();
    const reused = imagesOf(1);
    const first = imagesOf(1);
    const want = (await model.predict(reused)).toFloat32Array();
    const pending = [batcher.predict(first), batcher.predict(reused)]; // the second waits for the first
    reused.set(randomArray(36));
    expect((await pending[1]!).toFloat32Array()).toEqual(want);
    await pending[0];
  });

  it('refuses requests past maxWaiting at once, and takes them again once the queue has room', async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    const batcher = model.batcher({ maxWaiting: 3 });
    const running = batcher.predict(imagesOf(1)); // runs at once: not waiting
    const waiting = [batcher.predict(imagesOf(2)), batcher.predict(imagesOf(1))];
    await expect(batcher.predict(imagesOf(1))).rejects.toThrow(BatcherFullError);
    await expect(batcher.predict(imagesOf(1))).rejects.toThrow(/batcher.predict: 3 images wait for a pass already, the most this batcher holds is 3: try again later/);
    await Promise.all([running, ...waiting]);
    expect((await batcher.predict(imagesOf(1))).shape).toEqual([1, 3]);
    expect(batcher.stats).toMatchObject({ requests: 4, images: 5 });
    expect(() => model.batcher({ maxWaiting: 0 })).toThrow(/maxWaiting is 0, expected a positive integer/);
  });

  it('refuses bad requests and options by name', async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    const batcher = model.batcher();
    await expect(batcher.predict(Tensor.zeros([1, 1, 5, 6]))).rejects.toThrow(/batcher.predict: images have shape \[1, 1, 5, 6\], expected \[batch, 1, 6, 6\] with batch >= 1/);
    await expect(batcher.predict('x' as unknown as Tensor)).rejects.toThrow(TypeError);
    expect(() => model.batcher({ maxBatch: 0 })).toThrow(/maxBatch is 0, expected a positive integer/);
    const gone = imagesOf(1);
    gone.dispose();
    await expect(batcher.predict(gone)).rejects.toThrow(/disposed/);
    model.dispose();
    await expect(batcher.predict(imagesOf(1))).rejects.toThrow(/VisionTransformer has been disposed/);
    expect(() => model.batcher()).toThrow(/disposed/);
  });
});
