// A model's operations called without awaiting each other (a service's concurrent requests, a
// forgotten await) give what awaiting each in turn gives: predict, trainStep (whole and in
// micro-batches), computeGradients, save, saveOnnx and classify run in call order, reads together,
// updates alone. Changes that cannot wait their turn (castle, toOnnx, from) say so instead.
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { AdamW, Tensor, VisionTransformer, type TrainStepOptions, type VitConfig } from '../lib/index.js';
import { OperationQueue } from '../lib/nn/operation_queue.js';
import { randomArray, randomizedModel } from './helpers.js';

const tiny: Partial<VitConfig> = { imageSize: 6, patchSize: 3, inChannels: 1, numClasses: 3, width: 8, depth: 2, heads: 2, mlpRatio: 2, seed: 3 };


function weightsOf(model: VisionTransformer): Map<string, Float32Array> {
  return new Map([...model.parameters()].map(([name, t]) => [name, t.toFloat32Array()]));
}

/** What a run of calls gave: each call's result in plain numbers, and the weights at the end. */
interface Outcome {
  results: unknown[];
  weights: Map<string, Float32Array>;
}

type Call = (model: VisionTransformer, optimizer: AdamW, images: Tensor) => Promise<unknown>;

/** The calls on a fresh copy of `source`, each awaited before the next, or all started at once. */
async function runCalls(source: VisionTransformer, calls: Call[], images: Tensor, together: boolean): Promise<Outcome> {
  const model = VisionTransformer.from(source, {});
  // totalSteps: a castling schedule moves the branch's threshold from step to step.
  const optimizer = new AdamW(model.parameters(), { lr: 0.05, weightDecay: 0.01, totalSteps: 4 });
  let results: unknown[];
  if (together) {
    results = await Promise.all(calls.map((call) => call(model, optimizer, images)));
  } else {
    results = [];
    for (const call of calls) results.push(await call(model, optimizer, images));
  }
  const outcome = { results, weights: weightsOf(model) };
  model.dispose();
  return outcome;
}

const labels = [0, 2, 1, 1];
const predict: Call = async (model, _, images) => {
  const logits = await model.predict(images);
  const values = logits.toFloat32Array();
  logits.dispose();
  return values;
};
const train =
  (options: TrainStepOptions = {}): Call =>
  (model, optimizer, images) =>
    model.trainStep(images, labels, optimizer, options);
const gradients: Call = async (model, _, images) => {
  const { loss, gradients } = await model.computeGradients(images, labels);
  const head = gradients.get('head.weight')!.toFloat32Array();
  for (const g of gradients.values()) g.dispose();
  return { loss, head };
};
const images = Tensor.fromArray(randomArray(4 * 36), [4, 1, 6, 6]);

describe('operations called without awaiting each other', () => {
  for (const [label, config, options] of [
    ['softmax', { attention: 'softmax' }, {}],
    ['softmax, micro-batches of 1', { attention: 'softmax' }, { microBatch: 1 }],
    ['castling with its schedule', { attention: 'castling', convKernel: 3 }, { castling: { tau0: 0.1, start: 0.25, end: 0.75, l1: 0.1 } }],
    ['sparsifiner, both stages', { attention: 'sparsifiner', imageSize: 12, keepRate: 0.5 }, { stage: 'reconstruction' }],
  ] as const) {
    it(`give the results of the same calls awaited in turn (${label})`, async () => {
      const source = randomizedModel({ ...tiny, ...config });
      const size = source.config.imageSize;
      const input = Tensor.fromArray(randomArray(4 * size * size), [4, 1, size, size]);
      const step = train(options as TrainStepOptions);
      const calls: Call[] = [predict, step, predict, gradients, step, train(), predict, predict, step];
      const inTurn = await runCalls(source, calls, input, false);
      const together = await runCalls(source, calls, input, true);
      expect(together.results).toEqual(inTurn.results);
      expect(together.weights).toEqual(inTurn.weights);
      // Not vacuous: the steps changed the weights, and the predicts after them saw it (a
      // Sparsifiner's reconstruction step trains only the predictor, which may keep the same keys).
      expect(inTurn.results[6]).not.toEqual(inTurn.results[0]);
      expect(inTurn.weights).not.toEqual(weightsOf(source));
      input.dispose();
    });
  }

  it('save and saveOnnx write the weights of their place in the order', async () => {
    const dir = tmpdir();
    const paths = ['before', 'after'].map((name) => join(dir, `castling-vit-order-${process.pid}-${name}.safetensors`));
    const onnxPath = join(dir, `castling-vit-order-${process.pid}.onnx`);
    try {
      const model = randomizedModel({ ...tiny, attention: 'softmax' });
      const optimizer = new AdamW(model.parameters(), { lr: 0.05 });
      const before = weightsOf(model);
      await Promise.all([model.save(paths[0]!), train()(model, optimizer, images), model.save(paths[1]!), model.saveOnnx(onnxPath)]);
      const after = weightsOf(model);
      expect(after).not.toEqual(before);
      expect(weightsOf(await VisionTransformer.load(paths[0]!))).toEqual(before);
      expect(weightsOf(await VisionTransformer.load(paths[1]!))).toEqual(after);
      expect(Buffer.from(await readFile(onnxPath)).equals(Buffer.from(model.toOnnx()))).toBe(true);
    } finally {
      await Promise.all([...paths, onnxPath].map((p) => rm(p, { force: true })));
    }
  });

  it('a failed call does not hold up the ones after it', async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    const optimizer = new AdamW(model.parameters(), { lr: 0.05 });
    const nan = Tensor.fromArray(new Float32Array(4 * 36).fill(Number.NaN), [4, 1, 6, 6]);
    const failing = model.trainStep(nan, labels, optimizer);
    const next = model.predict(images);
    await expect(failing).rejects.toThrow(/trainStep: images must be finite/);
    expect((await next).shape).toEqual([4, 3]);
    expect(optimizer.step).toBe(0);
    expect(await train()(model, optimizer, images)).toMatchObject({ lr: 0.05 });
  });

  it('changes that cannot wait their turn name what is still running', async () => {
    const model = randomizedModel({ ...tiny, attention: 'castling', convKernel: 3 });
    const optimizer = new AdamW(model.parameters(), { lr: 0.05 });
    const step = train()(model, optimizer, images);
    const reading = model.predict(images);
    expect(() => model.castle()).toThrow(/castle\(\): this model still has operations queued or running \(trainStep, predict\); await them first/);
    expect(() => model.setAuxBranch(null)).toThrow(/setAuxBranch\(\): .*trainStep/);
    expect(() => model.toOnnx()).toThrow(/toOnnx\(\): .*change its weights/);
    expect(() => VisionTransformer.from(model, { attention: 'softmax' })).toThrow(/VisionTransformer.from: .*trainStep/);
    await Promise.all([step, reading]);
    model.castle();
    const reads = [model.predict(images), model.predict(images)];
    expect(() => model.toOnnx()).not.toThrow(); // reads alone change nothing
    expect(() => model.castle()).toThrow(/2 x predict/);
    await Promise.all(reads);
  });

  it('calls queued behind dispose() fail with the dispose error; the running one finishes', async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    const optimizer = new AdamW(model.parameters(), { lr: 0.05 });
    const running = model.predict(images);
    const queued = train()(model, optimizer, images);
    const after = model.predict(images);
    model.dispose();
    await expect(queued).rejects.toThrow(/disposed/);
    await expect(after).rejects.toThrow(/disposed/);
    await running.then(
      (logits) => expect(logits.shape).toEqual([4, 3]),
      (error: Error) => expect(error.message).toMatch(/disposed/),
    );
  });

  it('distillation from the model itself is refused', async () => {
    const model = randomizedModel({ ...tiny, attention: 'softmax' });
    const optimizer = new AdamW(model.parameters(), { lr: 0.05 });
    await expect(model.trainStep(images, labels, optimizer, { distillation: { teacher: model } })).rejects.toThrow(/distillation.teacher is the model being trained/);
  });
});


describe('OperationQueue', () => {
  /** An operation that records its start and ends when told to. */
  function controlled(log: string[], name: string) {
    let finish!: (fail: boolean) => void;
    const ended = new Promise<void>((resolve, reject) => (finish = (fail) => (fail ? reject(new Error(`${name} failed`)) : resolve())));
    return { operation: () => (log.push(name), ended), finish };
  }
  const settle = () => new Promise((resolve) => setTimeout(resolve, 0));

  it('runs reads together and each update alone, in call order', async () => {
    const queue = new OperationQueue();
    const log: string[] = [];
    const [read1, read2, update1, read3, update2] = ['read1', 'read2', 'update1', 'read3', 'update2'].map((name) => controlled(log, name));
    const results = [
      queue.run('read', 'predict', read1!.operation),
      queue.run('read', 'predict', read2!.operation),
      queue.run('update', 'trainStep', update1!.operation),
      queue.run('read', 'save', read3!.operation),
      queue.run('update', 'trainStep', update2!.operation),
    ];
    await settle();
    expect(log).toEqual(['read1', 'read2']);
    expect(queue.describePending()).toBe('2 x predict, 2 x trainStep, save');
    read2!.finish(false);
    await settle();
    expect(log).toEqual(['read1', 'read2']); // the update waits for every read called before it
    read1!.finish(false);
    await settle();
    expect(log).toEqual(['read1', 'read2', 'update1']);
    update1!.finish(true); // a failure is its caller's: the queue goes on
    await settle();
    expect(log).toEqual(['read1', 'read2', 'update1', 'read3']);
    read3!.finish(false);
    await settle();
    expect(log).toEqual(['read1', 'read2', 'update1', 'read3', 'update2']);
    update2!.finish(false);
    const settled = await Promise.allSettled(results);
    expect(settled.map((r) => r.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    expect(queue.describePending()).toBe('');
    expect(() => queue.requireIdle('castle()')).not.toThrow();
  });
});
