// vitFlops against a count taken from a model's own weight shapes, and against the figure
// published for DeiT-S (4.6 GMACs a 224-pixel image).
import { describe, expect, it } from 'vitest';

import { VisionTransformer, presets, type AttentionKind } from '../lib/index.js';
import { attentionFlops } from '../lib/flops.js';
import { vitFlops } from '../lib/nn/model_flops.js';

/** Each GEMM from the weights the model holds: 2 x rows it sees x the weight's elements. */
function flopsFromWeights(model: VisionTransformer, tokens: number, patches: number): number {
  let total = 0;
  for (const [name, tensor] of model.parameters()) {
    const elements = tensor.shape.reduce((a, b) => a * b, 1);
    if (name === 'patch_embed.proj.weight') total += 2 * patches * elements;
    else if (name === 'head.weight') total += 2 * elements; // the class token's row only
    else if (/^blocks\.\d+\.(attn\.(qkv|proj)|mlp\.fc[12])\.weight$/.test(name)) total += 2 * tokens * elements;
  }
  return total;
}

describe('vitFlops', () => {
  for (const kind of ['softmax', 'castling', 'sparsifiner'] as AttentionKind[]) {
    it(`counts a ${kind} model's GEMMs and attention`, () => {
      const config = { ...presets.deitTiny, attention: kind, imageSize: 96, depth: 3 };
      const model = VisionTransformer.create(config);
      const patches = (96 / 16) ** 2;
      const tokens = patches + 1;
      const gemms = flopsFromWeights(model, tokens, patches);
      const attention = config.depth * config.heads * attentionFlops(kind, 'forward', tokens, 64, { kernel: config.convKernel, keepRate: config.keepRate });
      const backward = config.depth * config.heads * attentionFlops(kind, 'backward', tokens, 64, { kernel: config.convKernel, keepRate: config.keepRate });
      expect(vitFlops(config, 'forward')).toBe(gemms + attention);
      expect(vitFlops(config, 'train')).toBe(3 * gemms + attention + backward);
      model.dispose();
    });
  }

  it('gives DeiT-S its published 4.6 GMACs', () => {
    expect(vitFlops({ ...presets.deitSmall, attention: 'softmax' }, 'forward') / 2 / 1e9).toBeCloseTo(4.6, 1);
  });
});
