// timm checkpoints without a castling-vit config: the architecture read from the tensors' shapes
// (and timm's config.json beside them: heads, preprocessing, labels), the same logits as the model
// they came from, and other ViT architectures refused by name rather than loaded without their
// extra tensors. (DeiT-III's LayerScale and patch-only pos_embed, folded on load, are checked
// against PyTorch in torch_reference.test.ts.)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, type VitConfig } from '../lib/index.js';
import { writeSafetensors } from '../lib/entry/safetensors.js';
import { randomArray, randomizedModel, scratchDirectory } from './helpers.js';

const root = scratchDirectory('castling-timm-');

const small: Partial<VitConfig> = { imageSize: 32, patchSize: 8, inChannels: 3, numClasses: 7, width: 192, depth: 2, heads: 3, mlpRatio: 3, qkvBias: false, seed: 5 };

/** A model's weights as timm writes them (no metadata) in a folder of their own; returns the path. */
async function timmFile(model: VisionTransformer, folder: string, extra: Record<string, number[]> = {}): Promise<string> {
  const dir = join(root, folder);
  mkdirSync(dir); // (a folder of its own: no config.json unless the test writes one)
  const path = join(dir, 'model.safetensors');
  const tensors = new Map([...model.parameters()].map(([name, t]) => [name, { shape: t.shape, data: t.toFloat32Array() }]));
  for (const [name, shape] of Object.entries(extra)) tensors.set(name, { shape, data: new Float32Array(shape.reduce((a, b) => a * b, 1)) });
  await writeSafetensors(path, tensors);
  return path;
}


async function expectSameLogits(a: VisionTransformer, b: VisionTransformer): Promise<void> {
  const { imageSize: s, inChannels: c } = a.config;
  const images = Tensor.fromArray(randomArray(2 * c * s * s), [2, c, s, s]);
  expect((await b.predict(images)).toFloat32Array()).toEqual((await a.predict(images)).toFloat32Array());
}

describe('timm checkpoints without a config', () => {
  it('load with the architecture their tensors give, and the logits of the model they came from', async () => {
    const source = randomizedModel(small, 0.3);
    const loaded = await VisionTransformer.load(await timmFile(source, 'plain'));
    expect({ ...loaded.config, seed: small.seed }).toEqual(source.config);
    expect(loaded.loadReport).toEqual({ initialised: [], ignored: [], resized: [], inferred: "config from the tensors' shapes (3 heads, as timm's 192-wide ViTs and DeiTs)" });
    await expectSameLogits(source, loaded);
    // The caller's config goes over what the tensors say: castling attention, another image size.
    const castling = await VisionTransformer.load(await timmFile(source, 'castling'), { config: { attention: 'castling', imageSize: 48 } });
    expect(castling.config).toMatchObject({ attention: 'castling', imageSize: 48, width: 192, heads: 3, mlpRatio: 3, numClasses: 7 });
    expect(castling.loadReport).toMatchObject({ initialised: ['blocks.0.attn.dconv.weight', 'blocks.1.attn.dconv.weight'], resized: ['pos_embed'] });
  });

  it("take heads, preprocessing and labels from timm's config.json beside them", async () => {
    // 160 wide in 16 heads of 10: none of timm's widths, so only the architecture's name tells.
    const source = randomizedModel({ ...small, width: 160, heads: 16, mlpRatio: 2 }, 0.3);
    const path = await timmFile(source, 'huge');
    await expect(VisionTransformer.load(path)).rejects.toThrow(/model\.safetensors: a timm ViT checkpoint whose heads are in no tensor's shape: its width 160 is none of timm's ViT and DeiT sizes/);
    const labels = ['a', 'b', 'c', 'd', 'e', 'f', 'g'];
    const sidecar = { architecture: 'vit_huge_patch14_clip_224', num_classes: 7, label_names: labels, pretrained_cfg: { mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], crop_pct: 1, interpolation: 'bilinear', crop_mode: 'center' } };
    writeFileSync(join(path, '..', 'config.json'), JSON.stringify(sidecar));
    const loaded = await VisionTransformer.load(path);
    expect(loaded.config.heads).toBe(16);
    expect(loaded.preprocessing).toEqual({ mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], cropFraction: 1, interpolation: 'bilinear' });
    expect(loaded.labels).toEqual(labels);
    expect(loaded.loadReport.inferred).toMatch(/config\.json's architecture vit_huge_patch14_clip_224/);
    expect(loaded.loadReport.inferred).toMatch(/preprocessing and labels from .*config\.json/);
    await expectSameLogits(source, loaded);
    // load()'s options go over the config.json; labels of another count are not the head's.
    const overridden = await VisionTransformer.load(path, { preprocessing: { cropFraction: 0.9 }, labels: ['1', '2', '3', '4', '5', '6', '7'] });
    expect(overridden.preprocessing.cropFraction).toBe(0.9);
    expect(overridden.labels![0]).toBe('1');
    writeFileSync(join(path, '..', 'config.json'), JSON.stringify({ ...sidecar, label_names: ['x'] }));
    expect((await VisionTransformer.load(path)).labels).toBeNull();
    // A config.json that is not timm's (or not JSON) is not used.
    writeFileSync(join(path, '..', 'config.json'), '{"model_type": "vit", "hidden_size": 160}');
    await expect(VisionTransformer.load(path)).rejects.toThrow(/heads are in no tensor's shape/);
    writeFileSync(join(path, '..', 'config.json'), 'not json');
    expect((await VisionTransformer.load(path, { config: { heads: 16 } })).config.heads).toBe(16);
  });

  it('other ViT architectures are refused by name, with or without a config', async () => {
    const source = randomizedModel(small, 0.3);
    const cases: Array<[Record<string, number[]>, RegExp]> = [
      [{ 'blocks_token_only.0.attn.q.weight': [192, 192] }, /'blocks_token_only\.0\.attn\.q\.weight' belongs to a ViT with class-attention layers/],
      [{ reg_token: [1, 4, 192] }, /'reg_token' belongs to a ViT with register tokens/],
      [{ 'fc_norm.weight': [192] }, /'fc_norm\.weight' belongs to a ViT with a pooled head/],
      [{ 'blocks.1.attn.q_norm.weight': [64] }, /query\/key normalisation/],
    ];
    for (const [i, [extra, message]] of cases.entries()) {
      const path = await timmFile(source, `other-${i}`, extra);
      await expect(VisionTransformer.load(path)).rejects.toThrow(message);
      await expect(VisionTransformer.load(path, { config: small })).rejects.toThrow(message);
    }
  });

  it('any other tensor in a timm file is refused: it belongs to an architecture castling-vit has not', async () => {
    const path = await timmFile(randomizedModel(small, 0.3), 'unknown', { 'blocks.0.attn.rel_pos_h': [15, 64], 'blocks.1.attn.rel_pos_w': [15, 64] });
    await expect(VisionTransformer.load(path)).rejects.toThrow(/'blocks\.0\.attn\.rel_pos_h', 'blocks\.1\.attn\.rel_pos_w' have no place in castling-vit's ViT: the checkpoint is of another architecture/);
  });

  it('tensors that do not fit a ViT are named', async () => {
    const source = randomizedModel(small, 0.3);
    const path = await timmFile(source, 'odd-grid');
    const dir = join(path, '..');
    const tensors = new Map([...source.parameters()].map(([name, t]) => [name, { shape: t.shape, data: t.toFloat32Array() }]));
    tensors.set('pos_embed', { shape: [1, 11, 192], data: new Float32Array(11 * 192) });
    await writeSafetensors(join(dir, 'grid.safetensors'), tensors);
    await expect(VisionTransformer.load(join(dir, 'grid.safetensors'))).rejects.toThrow(/grid\.safetensors: a timm ViT's tensors, but pos_embed \[1, 11, 192\] is not the class token and a square grid of patches/);
    tensors.delete('head.weight');
    tensors.delete('head.bias');
    tensors.set('pos_embed', { shape: [1, 17, 192], data: new Float32Array(17 * 192) });
    await writeSafetensors(join(dir, 'headless.safetensors'), tensors);
    await expect(VisionTransformer.load(join(dir, 'headless.safetensors'))).rejects.toThrow(/headless\.safetensors: a timm ViT's tensors, but it has no head\.weight/);
  });
});
