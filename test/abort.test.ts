// AbortSignal on a model's reads: predict, classify and the batcher. Aborted before its turn the
// work never runs; aborted while it runs, the call rejects at once and its result is disposed
// when the pass ends; other calls go on as if it had not been made.
import { describe, expect, it, vi } from 'vitest';

import { AdamW, Tensor, VisionTransformer, type VitConfig } from '../lib/index.js';
import { randomArray } from './helpers.js';

const tiny: Partial<VitConfig> = { imageSize: 6, patchSize: 3, inChannels: 1, numClasses: 3, width: 8, depth: 2, heads: 2, mlpRatio: 2, seed: 3, attention: 'softmax' };
const images = (count: number) => Tensor.fromArray(randomArray(count * 36), [count, 1, 6, 6]);
const labels = [0, 1];

describe('AbortSignal', () => {
  it('predict: an aborted signal rejects with its reason, before the call or while it waits its turn', async () => {
    const model = VisionTransformer.create(tiny);
    const optimizer = new AdamW(model.parameters(), { lr: 0.1 });
    await expect(model.predict(images(1), { signal: AbortSignal.abort(new Error('gone')) })).rejects.toThrow('gone');
    const events: string[] = [];
    const step = model.trainStep(images(2), labels, optimizer).then(() => events.push('trainStep'));
    const controller = new AbortController();
    const waiting = model.predict(images(1), { signal: controller.signal }).catch((error: Error) => events.push(`predict: ${error.name}`));
    controller.abort();
    await Promise.all([step, waiting]);
    expect(events).toEqual(['predict: AbortError', 'trainStep']); // rejected at once, not after the step
    expect((await model.predict(images(1))).shape).toEqual([1, 3]);
    await expect(model.predict(images(1), { signal: 'no' as unknown as AbortSignal })).rejects.toThrow(/predict: options.signal must be an AbortSignal/);
  });

  it('predict: aborted while its pass runs, the call rejects at once and the logits are freed', async () => {
    const model = VisionTransformer.create({ ...tiny, imageSize: 96, patchSize: 8, width: 64, depth: 4 });
    const input = Tensor.fromArray(randomArray(16 * 96 * 96), [16, 1, 96, 96]);
    (await model.predict(input)).dispose();
    // The tensors disposed from here on, by shape: the abandoned pass's logits must be among them.
    const disposed: string[] = [];
    const dispose = Tensor.prototype.dispose;
    const spy = vi.spyOn(Tensor.prototype, 'dispose').mockImplementation(function (this: Tensor) {
      if (!this.disposed) disposed.push(this.shape.join('x'));
      return dispose.call(this);
    });
    try {
      const controller = new AbortController();
      const running = model.predict(input, { signal: controller.signal });
      controller.abort();
      await expect(running).rejects.toThrow(/aborted/);
      expect(disposed).toEqual([]); // rejected before the pass could end
      (await model.predict(input)).dispose(); // a read is not held up by the abandoned pass
      // The abandoned pass ends in the background; then its logits are disposed, not left to the GC.
      for (let i = 0; i < 300 && disposed.length < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(disposed).toEqual(['16x3', '16x3']);
    } finally {
      spy.mockRestore();
    }
  });

  it('batcher: a waiting request leaves the queue, the others are answered', async () => {
    const model = VisionTransformer.create(tiny);
    const batcher = model.batcher();
    const first = batcher.predict(images(1));
    const controller = new AbortController();
    const dropped = batcher.predict(images(2), { signal: controller.signal });
    const kept = batcher.predict(images(1));
    controller.abort(new Error('client left'));
    await expect(dropped).rejects.toThrow('client left');
    expect((await kept).shape).toEqual([1, 3]);
    await first;
    expect(batcher.stats).toMatchObject({ requests: 3, images: 2, passes: 2 });
    await expect(batcher.predict(images(1), { signal: AbortSignal.abort() })).rejects.toThrow(/aborted/);
  });

  it('batcher: a request aborted while its batch runs is rejected at once; its neighbours get their logits', async () => {
    const model = VisionTransformer.create(tiny);
    const batcher = model.batcher();
    const controller = new AbortController();
    const running = batcher.predict(images(3), { signal: controller.signal });
    controller.abort();
    await expect(running).rejects.toThrow(/aborted/);
    const pair = await Promise.all([batcher.predict(images(1)), batcher.predict(images(2))]);
    expect(pair.map((t) => t.shape)).toEqual([[1, 3], [2, 3]]);
  });

  it('classify: aborted, it rejects at once (no chunk starts after that), and the next call runs', async () => {
    const model = VisionTransformer.create(tiny);
    const raw = Array.from({ length: 6 }, () => ({ pixels: new Uint8Array(36).map((_, i) => i * 7), width: 6, height: 6, channels: 1 as const }));
    const controller = new AbortController();
    const pending = model.classify(raw, { batchSize: 1, signal: controller.signal });
    controller.abort();
    await expect(pending).rejects.toThrow(/aborted/);
    await expect(model.classify(raw, { signal: AbortSignal.abort() })).rejects.toThrow(/aborted/);
    expect(await model.classify(raw, { batchSize: 4 })).toHaveLength(6);
  });
});
