// Against PyTorch itself: a small ViT's weights in timm's layout and what PyTorch computes from
// them (test/fixtures/torch_reference.py wrote both, in float64): our logits at the trained image
// size and at a larger one (pos_embed resampled on load, as timm's resample_abs_pos_embed), and
// pos_embed resizes alone against torch's antialiased bicubic; and readImages against timm's eval
// transform run by torchvision and PIL. Independent of our own float64 references: a misread timm
// convention (qkv split, LayerNorm eps, GELU form, the resize's filter, the crop) would show here.
// The same for a DeiT-III checkpoint (torch_deit3_reference.py), whose LayerScale and patch-only
// pos_embed are folded into the plain ViT on load. And checkpoints of Castling-ViT's own PyTorch
// module (torch_castling_reference.py): timm's names plus the depthwise convolutions.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { AdamW, Tensor, VisionTransformer, type VitConfig } from '../lib/index.js';
import { imagenetPreprocessing, readImages } from '../lib/io/images.js';
import { resizePositionEmbedding } from '../lib/nn/position_embedding.js';

import { relativeError } from './helpers.js';

const fixtures = fileURLToPath(new URL('./fixtures/', import.meta.url));

interface TorchReference {
  torch: string;
  config: Partial<VitConfig>;
  cases: Array<{ imageSize: number; images: number[]; logits: number[] }>;
  posEmbedResizes: Array<{ from: number; to: number; width: number; input: number[]; output: number[] }>;
  preprocessing: { size: number; tensor: number[] };
}

interface TorchTraining {
  lr: number;
  weightDecay: number;
  labelSmoothing: number;
  maxGradNorm: number;
  steps: number;
  labels: number[];
  imageSize: number;
  images: number[];
  losses: number[];
  change: Record<string, number[]>;
}

const reference = JSON.parse(readFileSync(`${fixtures}torch-reference.json`, 'utf8')) as TorchReference;
/** test/fixtures/torch_deit3_reference.py: DeiT-III's LayerScale and patch-only pos_embed. */
const deit3 = JSON.parse(readFileSync(`${fixtures}torch-deit3.json`, 'utf8')) as Pick<TorchReference, 'torch' | 'config' | 'cases'>;
/** test/fixtures/torch_castling_reference.py: Castling-ViT's own module, in inference form, per convolution form. */
const castlingRelease = JSON.parse(readFileSync(`${fixtures}torch-castling.json`, 'utf8')) as {
  torch: string;
  config: Partial<VitConfig>;
  forms: Record<'tokens' | 'spatial', { convKernel: number; images: number[]; logits: number[] }>;
};
const training = JSON.parse(readFileSync(`${fixtures}torch-training.json`, 'utf8')) as TorchTraining;

describe(`PyTorch ${reference.torch} reference`, () => {
  for (const c of reference.cases) {
    it(`gives timm's logits for timm-layout weights at ${c.imageSize}x${c.imageSize}`, async () => {
      const model = await VisionTransformer.load(`${fixtures}torch-vit.safetensors`, { config: { ...reference.config, imageSize: c.imageSize } });
      try {
        const resized = c.imageSize !== reference.config.imageSize;
        expect(model.loadReport).toEqual({ initialised: [], ignored: [], resized: resized ? ['pos_embed'] : [], inferred: "config from the tensors' shapes (all but the heads), the one given to load() over it" });
        const batch = c.images.length / (3 * c.imageSize * c.imageSize);
        const logits = await model.predict(Tensor.fromArray(Float32Array.from(c.images), [batch, 3, c.imageSize, c.imageSize]));
        expect(relativeError(logits.toFloat32Array(), c.logits)).toBeLessThan(2e-6); // ours: 2.5e-7; LayerNorm eps 1e-5 instead of 1e-6 alone moves them 1.2e-5
        logits.dispose();
      } finally {
        model.dispose();
      }
    });
  }

  for (const c of deit3.cases) {
    it(`gives timm's logits for a DeiT-III checkpoint (LayerScale, patch-only pos_embed) at ${c.imageSize}x${c.imageSize}`, async () => {
      // Its width of 24 leaves the heads to the caller; everything else comes from the file.
      const model = await VisionTransformer.load(`${fixtures}torch-deit3.safetensors`, { config: { heads: deit3.config.heads, imageSize: c.imageSize } });
      try {
        expect(model.config).toMatchObject({ ...deit3.config, imageSize: c.imageSize });
        expect(model.loadReport.inferred).toMatch(/LayerScale's 4 gammas folded into attn\.proj and mlp\.fc2; pos_embed over the patches alone/);
        const batch = c.images.length / (3 * c.imageSize * c.imageSize);
        const logits = await model.predict(Tensor.fromArray(Float32Array.from(c.images), [batch, 3, c.imageSize, c.imageSize]));
        expect(relativeError(logits.toFloat32Array(), c.logits)).toBeLessThan(2e-6);
        logits.dispose();
      } finally {
        model.dispose();
      }
    });
  }

  for (const [form, c] of Object.entries(castlingRelease.forms)) {
    it(`gives the logits of Castling-ViT's own module for its checkpoint (${form} convolution), loaded with no options`, async () => {
      const model = await VisionTransformer.load(`${fixtures}torch-castling-${form}.safetensors`);
      try {
        // Heads, kernel and form from the convolution's shape; the release predicts without the auxiliary branch.
        expect(model.config).toMatchObject({ ...castlingRelease.config, attention: 'castling', convKernel: c.convKernel, convForm: form });
        expect(model.castled).toBe(true);
        expect(model.loadReport.inferred).toMatch(/castling attention, its heads and .* convolution of \d from blocks\.0\.attn\.dconv\.weight/);
        const s = castlingRelease.config.imageSize!;
        const logits = await model.predict(Tensor.fromArray(Float32Array.from(c.images), [2, 3, s, s]));
        expect(relativeError(logits.toFloat32Array(), c.logits)).toBeLessThan(2e-6);
        logits.dispose();
      } finally {
        model.dispose();
      }
    });
  }

  it("resamples pos_embed as torch's antialiased bicubic does, shrinking and enlarging", () => {
    for (const r of reference.posEmbedResizes) {
      const ours = resizePositionEmbedding(Float32Array.from(r.input), r.width, r.from, r.to);
      expect(relativeError(ours, r.output), `${r.from} -> ${r.to}`).toBeLessThan(1e-6);
    }
  });
});

describe('training steps as timm takes them with torch.optim.AdamW', () => {
  it('gives the same losses and parameter changes (label smoothing, clipping, no-decay group)', async () => {
    const t = training;
    const model = await VisionTransformer.load(`${fixtures}torch-vit.safetensors`, { config: reference.config });
    const images = Tensor.fromArray(Float32Array.from(t.images), [t.labels.length, 3, t.imageSize, t.imageSize]);
    const optimizer = new AdamW(model.parameters(), { lr: t.lr, weightDecay: t.weightDecay, maxGradNorm: t.maxGradNorm });
    try {
      const before = new Map([...model.parameters()].map(([name, p]) => [name, p.toFloat32Array()]));
      const losses: number[] = [];
      for (let s = 0; s < t.steps; s++) losses.push((await model.trainStep(images, t.labels, optimizer, { labelSmoothing: t.labelSmoothing })).loss);
      expect(relativeError(losses, t.losses)).toBeLessThan(1e-5);
      const C = reference.config.width!;
      for (const [name, p] of model.parameters()) {
        const start = before.get(name)!;
        const change = Array.from(p.toFloat32Array(), (v, i) => v - start[i]!);
        const expected = t.change[name]!;
        if (name.endsWith('attn.qkv.bias')) {
          // The key bias gets no gradient in exact arithmetic (q . b_k is the same for every key,
          // and the softmax ignores it): float64 torch leaves it put (1e-13), while float32
          // rounding noise, which Adam scales up to steps of ~lr / 10, moves ours. Compared: q, v.
          change.splice(C, C);
          expected.splice(C, C);
        }
        expect(relativeError(change, expected), name).toBeLessThan(5e-4); // ours: 4.7e-5 at most
      }
    } finally {
      images.dispose();
      model.dispose();
    }
  });
});

describe("timm's eval transform (torchvision and PIL)", () => {
  it('is what readImages makes of a PNG: within an 8-bit level (rounding), under a tenth of one on average', async () => {
    const { size, tensor } = reference.preprocessing;
    const ours = (await readImages([`${fixtures}torch-preprocess.png`], { size, channels: 3, preprocessing: imagenetPreprocessing })).toFloat32Array();
    expect(ours.length).toBe(tensor.length);
    // In 8-bit levels: a normalised difference times std * 255 (std ~0.226 for ImageNet's).
    const level = 1 / (0.226 * 255);
    let worst = 0, total = 0;
    ours.forEach((v, i) => {
      const diff = Math.abs(v - tensor[i]!);
      worst = Math.max(worst, diff);
      total += diff;
    });
    expect(worst / level).toBeLessThan(1.5); // ours 1.01; bilinear: 20, cropFraction 0.9: 143
    expect(total / ours.length / level).toBeLessThan(0.15); // ours 0.084
  });
});
