// Checkpoints with a second prefix token or in Hugging Face transformers' layout, against PyTorch:
// transformers' ViTForImageClassification, DeiTForImageClassification and
// DeiTForImageClassificationWithTeacher (test/fixtures/torch_hf_reference.py: modules of
// transformers' structure and names, with their config.json and preprocessor_config.json), and
// timm's distilled DeiT (torch_distilled_reference.py: dist_token, head_dist, the heads averaged).
import { copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';

import { describe, expect, it } from 'vitest';

import { AdamW, Tensor, VisionTransformer, type VitConfig } from '../lib/index.js';

import { relativeError, scratchDirectory } from './helpers.js';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));
const root = scratchDirectory('castling-hf-');

interface Case {
  images: number[];
  logits: number[];
}
const hf = JSON.parse(readFileSync(`${fixtures}hf/reference.json`, 'utf8')) as { torch: string; config: Partial<VitConfig>; labels: string[]; models: Record<string, Case & { architecture: string }> };
const distilled = JSON.parse(readFileSync(`${fixtures}torch-deit-distilled.json`, 'utf8')) as Case & { config: Partial<VitConfig>; embeddings: number[] };

async function logitsOf(model: VisionTransformer, c: Case, output: 'logits' | 'embeddings' = 'logits'): Promise<Float32Array> {
  const s = model.config.imageSize;
  const images = Tensor.fromArray(Float32Array.from(c.images), [c.images.length / (3 * s * s), 3, s, s]);
  const out = await (output === 'logits' ? model.predict(images) : model.embed(images));
  images.dispose();
  const values = out.toFloat32Array();
  out.dispose();
  return values;
}

describe(`Hugging Face transformers checkpoints (PyTorch ${hf.torch})`, () => {
  const expected: Record<string, { distillationToken: boolean; distillationHead: boolean }> = {
    vit: { distillationToken: false, distillationHead: false },
    deit: { distillationToken: true, distillationHead: false },
    'deit-teacher': { distillationToken: true, distillationHead: true },
  };
  for (const [folder, c] of Object.entries(hf.models)) {
    it(`${c.architecture} loads with no options and gives its logits`, async () => {
      const model = await VisionTransformer.load(`${fixtures}hf/${folder}/model.safetensors`);
      try {
        expect(model.config).toMatchObject({ ...hf.config, attention: 'softmax', layerNormEps: 1e-12, ...expected[folder] });
        expect(model.labels).toEqual(hf.labels);
        expect(model.loadReport.inferred).toMatch(new RegExp(`transformers' ${c.architecture} layout, renamed to timm's; the tensors' shapes, heads and LayerNorm epsilon from .*config\\.json`));
        expect(relativeError(await logitsOf(model, c), c.logits)).toBeLessThan(2e-6);
      } finally {
        model.dispose();
      }
    });
  }

  it("takes the preprocessing from preprocessor_config.json: ViT's resize to the size, DeiT's crop", async () => {
    const vit = await VisionTransformer.load(`${fixtures}hf/vit/model.safetensors`);
    expect(vit.preprocessing).toEqual({ mean: [0.5, 0.5, 0.5], std: [0.5, 0.5, 0.5], cropFraction: 1, interpolation: 'bilinear' });
    const deit = await VisionTransformer.load(`${fixtures}hf/deit/model.safetensors`);
    expect(deit.preprocessing).toMatchObject({ mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], interpolation: 'bicubic' });
    expect(deit.preprocessing.cropFraction).toBeCloseTo(16 / 18, 10);
    expect(deit.loadReport.inferred).toMatch(/labels from .*hf\/deit\/config\.json; preprocessing from .*hf\/deit\/preprocessor_config\.json$/);
    vit.dispose();
    deit.dispose();
  });

  it('without config.json: heads from the caller, transformers\' LayerNorm epsilon', async () => {
    const path = join(root, 'model.safetensors');
    copyFileSync(`${fixtures}hf/vit/model.safetensors`, path);
    // 24 wide in 3 heads: no tensor says the heads.
    await expect(VisionTransformer.load(path)).rejects.toThrow(/heads are in no tensor's shape/);
    const model = await VisionTransformer.load(path, { config: { heads: 3 } });
    expect(model.config.layerNormEps).toBe(1e-12);
    expect(model.labels).toBeNull();
    expect(relativeError(await logitsOf(model, hf.models.vit!), hf.models.vit!.logits)).toBeLessThan(2e-6);
    model.dispose();
  });
});

describe("timm's distilled DeiT", () => {
  it('loads with its distillation token and second head, and predicts the two heads averaged', async () => {
    const model = await VisionTransformer.load(`${fixtures}torch-deit-distilled.safetensors`, { config: { heads: 3 } });
    try {
      expect(model.config).toMatchObject({ ...distilled.config, distillationToken: true, distillationHead: true });
      expect(relativeError(await logitsOf(model, distilled), distilled.logits)).toBeLessThan(2e-6);
      expect(relativeError(await logitsOf(model, distilled, 'embeddings'), distilled.embeddings)).toBeLessThan(2e-6);
      // Saved and loaded again: a file of ours with the same logits.
      const saved = join(root, 'distilled.safetensors');
      await model.save(saved);
      const again = await VisionTransformer.load(saved);
      expect(await logitsOf(again, distilled)).toEqual(await logitsOf(model, distilled));
      again.dispose();
    } finally {
      model.dispose();
    }
  });

  it('castling, Sparsifiner, training and ONNX refuse it with the reason', async () => {
    const model = await VisionTransformer.load(`${fixtures}torch-deit-distilled.safetensors`, { config: { heads: 3 } });
    try {
      expect(() => VisionTransformer.from(model, { attention: 'castling' })).toThrow(/a distillation token \(a distilled DeiT\) with castling attention is not supported: castling models are trained/);
      expect(() => VisionTransformer.from(model, { attention: 'sparsifiner' })).toThrow(/with sparsifiner attention is not supported: Sparsifiner's predictor keeps the class token's row dense and no other prefix token's/);
      await expect(VisionTransformer.load(`${fixtures}torch-deit-distilled.safetensors`, { config: { heads: 3, attention: 'castling' } })).rejects.toThrow(/distillation token/);
      const optimizer = new AdamW(model.parameters(), { lr: 1e-3 });
      const images = Tensor.zeros([1, 3, 16, 16]);
      await expect(model.trainStep(images, [0], optimizer)).rejects.toThrow(/training a model with a distillation token \(a distilled DeiT\) is not supported/);
      await expect(VisionTransformer.load(`${fixtures}torch-deit-distilled.safetensors`, { config: { heads: 3, imageSize: 24 } })).rejects.toThrow(/a model with a distillation token runs at its own image size/);
      expect(() => model.toOnnx()).toThrow(/a model with a distillation token \(a distilled DeiT\) is not exported/);
      images.dispose();
    } finally {
      model.dispose();
    }
  });
});
