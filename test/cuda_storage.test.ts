// 16-bit weight storage (config.storage, lib/nn/weight_storage.ts): a CUDA model holding its
// linear layers' weights in bfloat16 or float16 predicts within the rounding those forms allow of
// the float32 CPU model, saves its weights in the form it holds them, and refuses training. The
// config checks run everywhere; the models wherever CUDA is available (on a GPU, or in CI on the
// addon built on the CUDA emulator: npm run test:cuda-emulation).
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { AdamW, Tensor, VisionTransformer, cudaAvailable, presets, resolveConfig, type VitConfig } from '../lib/index.js';
import { readSafetensors } from '../lib/entry/safetensors.js';
import { bfloat16Bits, float16Bits } from '../lib/io/half_encoding.js';
import { randomArray, randomizedModel, scratchDirectory } from './helpers.js';

const cuda = cudaAvailable();
const skipReason = cuda.available ? '' : ` (skipped: ${cuda.reason})`;
const dir = scratchDirectory('castling-cuda-storage-');

const tiny: Partial<VitConfig> = { ...presets.digits, imageSize: 16, patchSize: 4, width: 24, depth: 2, heads: 2, mlpRatio: 2, numClasses: 3, seed: 7 };

/**
 * The unit roundoff of each form: 8 significant bits in bfloat16, 11 in float16. Each of the 9
 * GEMMs on the way to the logits (4 per block, 2 blocks, the head) rounds both its inputs, at most
 * 2u relative each; the errors add up through the residual stream to at most about 18u of the
 * logits' scale (LayerNorm rescales but does not amplify relative errors). That is the bound.
 */
const UNIT_ROUNDOFF = { bfloat16: 2 ** -9, float16: 2 ** -11 } as const;
const GEMMS_TO_LOGITS = 9;

function relativeError(got: Float32Array, want: Float32Array): number {
  let scale = 1e-3;
  for (const w of want) scale = Math.max(scale, Math.abs(w));
  let worst = got.length === want.length ? 0 : Infinity;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!) / scale);
  return worst;
}

describe('config.storage', () => {
  it('names a wrong value and what was expected', () => {
    expect(() => resolveConfig({ ...tiny, device: 'cuda', storage: 'bf16' as never })).toThrow(/config\.storage is "bf16", expected 'float32', 'bfloat16' or 'float16'/);
    expect(() => resolveConfig({ ...tiny, storage: 16 as never })).toThrow(/config\.storage is 16/);
  });

  it("is refused on device 'cpu', whose linear layers take float32 weights", () => {
    expect(() => resolveConfig({ ...tiny, storage: 'bfloat16' })).toThrow(/config\.storage is 'bfloat16' on device 'cpu': 16-bit weights run on device 'cuda' only/);
    expect(() => resolveConfig({ ...tiny, storage: 'bfloat16' })).toThrow(expect.objectContaining({ code: 'ERR_CASTLING_UNSUPPORTED' }));
    expect(resolveConfig({ ...tiny }).storage).toBe('float32');
  });

  it('rounds to nearest even when a weight is written in 16 bits', () => {
    // Ties: 1 + 2^-8 lies halfway between two bfloat16 values and goes to the even one (1);
    // 1 + 3 * 2^-8 goes up to the even 1 + 2^-6. float16 the same with 2^-11.
    expect(bfloat16Bits(1 + 2 ** -8)).toBe(0x3f80);
    expect(bfloat16Bits(1 + 3 * 2 ** -8)).toBe(0x3f82);
    expect(float16Bits(1 + 2 ** -11)).toBe(0x3c00);
    expect(float16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02);
    expect(float16Bits(65504)).toBe(0x7bff);
    expect(float16Bits(65520)).toBe(0x7c00); // halfway to 65536: infinity
    expect(float16Bits(-(2 ** -24))).toBe(0x8001); // the smallest subnormal
    expect(float16Bits(2 ** -25)).toBe(0x0000); // halfway to it: even, zero
    expect(float16Bits(Number.NaN) & 0x7c00).toBe(0x7c00);
  });
});

describe.skipIf(!cuda.available)(`16-bit weight storage on device 'cuda'${skipReason}`, () => {
  for (const storage of ['bfloat16', 'float16'] as const) {
    it(`${storage}: predict and embed match the float32 CPU model within ${GEMMS_TO_LOGITS * 2} unit roundoffs`, async () => {
      // Random values in every parameter: fresh initialisation leaves biases 0 and norms 1.
      const cpu = randomizedModel({ ...tiny, attention: 'castling', castlingForm: 'inference' }, 0.3);
      const path = join(dir, `random-${storage}.safetensors`);
      await cpu.save(path);
      const gpu = await VisionTransformer.load(path, { config: { device: 'cuda', storage } });
      const exact = await VisionTransformer.load(path, { config: { device: 'cuda' } });
      expect(gpu.parameters().get('blocks.0.mlp.fc1.weight')!.dtype).toBe(storage);
      expect(gpu.parameters().get('blocks.0.norm1.weight')!.dtype).toBe('float32');
      const x = Tensor.fromArray(randomArray(3 * 16 * 16), [3, 1, 16, 16]);
      const [a, b, c] = [await gpu.predict(x), await cpu.predict(x), await exact.predict(x)];
      const bound = GEMMS_TO_LOGITS * 2 * UNIT_ROUNDOFF[storage];
      const error = relativeError(a.toFloat32Array(), b.toFloat32Array());
      expect(error).toBeLessThan(bound);
      // ... and the rounding really happened: the float32 CUDA model is much closer.
      expect(relativeError(c.toFloat32Array(), b.toFloat32Array())).toBeLessThan(Math.min(1e-4, error / 4));
      const [ea, eb] = [await gpu.embed(x), await cpu.embed(x)];
      expect(relativeError(ea.toFloat32Array(), eb.toFloat32Array())).toBeLessThan(bound);
      for (const t of [x, a, b, c, ea, eb]) t.dispose();
      for (const m of [cpu, gpu, exact]) m.dispose();
    });
  }

  it('saves the weights as it holds them, and load converts to the storage asked for', async () => {
    const gpu = VisionTransformer.create({ ...tiny, device: 'cuda', storage: 'bfloat16' });
    const path = join(dir, 'bfloat16.safetensors');
    await gpu.save(path);
    const file = await readSafetensors(path);
    expect(file.tensors.get('blocks.1.attn.qkv.weight')!.dtype).toBe('BF16');
    expect(file.tensors.get('head.weight')!.dtype).toBe('BF16');
    expect(file.tensors.get('blocks.1.norm2.bias')!.dtype).toBe('F32');
    expect(JSON.parse(file.metadata.config!).storage).toBeUndefined(); // the loader's choice, as the device
    const onCpu = await VisionTransformer.load(path);
    const back = await VisionTransformer.load(path, { config: { device: 'cuda', storage: 'bfloat16' } });
    expect([onCpu.config.storage, back.config.storage]).toEqual(['float32', 'bfloat16']);
    const held = gpu.parameters();
    for (const [name, t] of back.parameters()) {
      expect(t.dtype, name).toBe(held.get(name)!.dtype);
      expect(t.toFloat32Array(), name).toEqual(held.get(name)!.toFloat32Array());
      expect(onCpu.parameters().get(name)!.toFloat32Array(), name).toEqual(held.get(name)!.toFloat32Array());
    }
    const x = Tensor.fromArray(randomArray(2 * 16 * 16), [2, 1, 16, 16]);
    const [a, b] = [await gpu.predict(x), await back.predict(x)];
    expect(b.toFloat32Array()).toEqual(a.toFloat32Array()); // the same weights on the same device
    for (const t of [x, a, b]) t.dispose();
    for (const m of [gpu, onCpu, back]) m.dispose();
  });

  it('refuses training, naming the field', async () => {
    const gpu = VisionTransformer.create({ ...tiny, device: 'cuda', storage: 'float16' });
    const x = Tensor.fromArray(randomArray(2 * 16 * 16), [2, 1, 16, 16]);
    const optimizer = new AdamW(new Map(), { lr: 1e-3 });
    await expect(gpu.trainStep(x, [0, 1], optimizer)).rejects.toThrow(/trainStep: config\.storage is 'float16': training needs float32 weights/);
    await expect(gpu.computeGradients(x, [0, 1])).rejects.toThrow(/computeGradients: config\.storage is 'float16'/);
    optimizer.dispose();
    x.dispose();
    gpu.dispose();
  });
});
