// ONNX export: the graph a model writes runs in another runtime (onnxruntime-web, WebAssembly)
// and gives our logits, for every attention kind and option, with a free or a fixed batch size;
// what it cannot export is a clear error; the file is written atomically.
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, presets, type VitConfig } from '../lib/index.js';
import { randomArray, scratchDirectory } from './helpers.js';

const dir = scratchDirectory('castling-onnx-');
ort.env.wasm.numThreads = 1;

/** A small model with awkward sizes: 5 x 5 patches (26 tokens), heads of 12, 7 classes. */
function tiny(overrides: Partial<VitConfig>): VisionTransformer {
  const model = VisionTransformer.create({ ...presets.deitTiny, imageSize: 35, patchSize: 7, width: 36, heads: 3, depth: 2, numClasses: 7, seed: 11, ...overrides });
  // Weights away from their initialisation (zero biases, unit norms) so that every term shows.
  for (const t of model.parameters().values()) t.set(randomArray(t.size, 0.3).map((v, i) => v + (i % 3) * 0.05));
  if (model.config.attention === 'castling') model.castle();
  return model;
}

async function runOnnx(bytes: Uint8Array, images: Float32Array, shape: number[], output = 'logits'): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(bytes);
  try {
    const out = await session.run({ images: new ort.Tensor('float32', images, shape) });
    return out[output]!.data as Float32Array;
  } finally {
    await session.release();
  }
}

function expectClose(actual: Float32Array, expected: Float32Array): void {
  expect(actual.length).toBe(expected.length);
  const scale = Math.max(...Array.from(expected, Math.abs));
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i]! - expected[i]!));
  expect(worst / scale).toBeLessThan(2e-5);
}

describe('ONNX export', () => {
  const forms: Array<[string, Partial<VitConfig>]> = [
    ['softmax', { attention: 'softmax' }],
    ['castling, convolution along tokens', { attention: 'castling', convForm: 'tokens', convKernel: 5 }],
    ['castling, convolution over the patch grid', { attention: 'castling', convForm: 'spatial', convKernel: 3 }],
    ['sparsifiner, top-k keys', { attention: 'sparsifiner', keepRate: 0.25 }],
    ['sparsifiner, coefficient top-k and a shared basis', { attention: 'sparsifiner', keepRate: 0.4, coefficientKeep: 2, sharedBasis: true }],
    ['sparsifiner, keys above a threshold', { attention: 'sparsifiner', keySelection: 'threshold', selectionThreshold: 0.02 }],
    ['sparsifiner, a threshold above every key (each query keeps its best)', { attention: 'sparsifiner', keySelection: 'threshold', selectionThreshold: 100 }],
  ];
  for (const [label, overrides] of forms) {
    it(`${label}: onnxruntime-web gives our logits at batch 1 and 3 from one graph`, async () => {
      const model = tiny(overrides);
      const bytes = model.toOnnx();
      for (const batch of [1, 3]) {
        const shape = [batch, 3, 35, 35];
        const images = randomArray(batch * 3 * 35 * 35, 2);
        const ours = await model.predict(Tensor.fromArray(images, shape));
        expectClose(await runOnnx(bytes, images, shape), ours.toFloat32Array());
      }
    }, 30_000);
  }

  it("output 'embeddings' ends the graph before the head: onnxruntime-web gives model.embed's values", async () => {
    for (const overrides of [{ attention: 'softmax' }, { attention: 'castling', convKernel: 3 }] as const) {
      const model = tiny(overrides);
      const shape = [2, 3, 35, 35];
      const images = randomArray(2 * 3 * 35 * 35, 2);
      const ours = await model.embed(Tensor.fromArray(images, shape));
      expectClose(await runOnnx(model.toOnnx({ output: 'embeddings' }), images, shape, 'embeddings'), ours.toFloat32Array());
    }
    expect(() => tiny({ attention: 'softmax' }).toOnnx({ output: 'features' as 'logits' })).toThrow(/output is "features", expected 'logits' or 'embeddings'/);
  }, 30_000);

  it('a fixed batch size, a grey one-channel model, and the file written whole', async () => {
    const model = tiny({ attention: 'softmax', inChannels: 1 });
    const path = join(dir, 'fixed.onnx');
    writeFileSync(path, 'an older file');
    await model.saveOnnx(path, { batch: 2 });
    const images = randomArray(2 * 35 * 35);
    const ours = await model.predict(Tensor.fromArray(images, [2, 1, 35, 35]));
    expectClose(await runOnnx(readFileSync(path), images, [2, 1, 35, 35]), ours.toFloat32Array());
    // The fixed graph refuses another batch size.
    await expect(runOnnx(readFileSync(path), randomArray(35 * 35), [1, 1, 35, 35])).rejects.toThrow(/dimension|Got invalid dimensions/i);
  }, 30_000);

  it('castling-vit export-onnx writes the graph of a saved model', async () => {
    const model = tiny({ attention: 'castling' });
    const modelPath = join(dir, 'cli.safetensors');
    await model.save(modelPath);
    const out = join(dir, 'cli.onnx');
    const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
    const run = spawnSync(process.execPath, [cli, 'export-onnx', modelPath, out], { encoding: 'utf8' });
    expect(run.status, run.stderr).toBe(0);
    expect(run.stdout).toMatch(/wrote .*cli\.onnx \(castling attention, batch free, output logits\)/);
    const images = randomArray(2 * 3 * 35 * 35);
    const ours = await model.predict(Tensor.fromArray(images, [2, 3, 35, 35]));
    expectClose(await runOnnx(readFileSync(out), images, [2, 3, 35, 35]), ours.toFloat32Array());
  }, 30_000);

  it('refuses what it cannot export, with the reason', async () => {
    const uncastled = VisionTransformer.create({ ...presets.digits, attention: 'castling', depth: 1 });
    expect(() => uncastled.toOnnx()).toThrow(/call model.castle\(\) first/);
    const model = VisionTransformer.create({ ...presets.digits, depth: 1 });
    expect(() => model.toOnnx({ batch: 0 })).toThrow(/batch is 0, expected a positive integer/);
    const path = join(dir, 'kept.onnx');
    writeFileSync(path, 'keep me');
    await expect(uncastled.saveOnnx(path)).rejects.toThrow(/castle/);
    expect(readFileSync(path, 'utf8')).toBe('keep me');
    model.dispose();
    expect(() => model.toOnnx()).toThrow(/disposed/);
  });
});
