// Position embeddings for another image size: the patch grid resampled bicubically (PIL's filter,
// as timm's resample_abs_pos_embed through PyTorch's antialiased bicubic), the class token kept;
// a model saved at one image size loads at another with pos_embed listed as resized.
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, presets } from '../lib/index.js';
import { resizePositionEmbedding } from '../lib/nn/position_embedding.js';
import { random, randomArray, scratchDirectory } from './helpers.js';

const dir = scratchDirectory('castling-pos-');

/** A [1 + side², width] embedding whose patch tokens hold f(x, y, channel). */
function grid(side: number, width: number, f: (x: number, y: number, c: number) => number): Float32Array {
  const out = randomArray((1 + side * side) * width); // the class token's row: random
  for (let y = 0; y < side; y++) for (let x = 0; x < side; x++) for (let c = 0; c < width; c++) out[(1 + y * side + x) * width + c] = f(x, y, c);
  return out;
}

describe('resizePositionEmbedding', () => {
  it('is the identity at the same size and keeps the class token', () => {
    const pos = randomArray((1 + 7 * 7) * 5);
    expect(resizePositionEmbedding(pos, 5, 7, 7)).toEqual(pos);
    const up = resizePositionEmbedding(pos, 5, 7, 12);
    expect(up.length).toBe((1 + 144) * 5);
    expect(up.subarray(0, 5)).toEqual(pos.subarray(0, 5));
  });

  it('keeps a constant grid constant, up and down', () => {
    const value = random() * 4 - 2;
    for (const [from, to] of [[14, 28], [14, 9], [5, 17], [24, 14]] as const) {
      const out = resizePositionEmbedding(grid(from, 3, () => value), 3, from, to);
      for (let i = 3; i < out.length; i++) expect(out[i]).toBeCloseTo(value, 6);
    }
  });

  it('reproduces a plane away from the border when enlarging (the cubic kernel is exact on linear functions)', () => {
    const [a, b, c0] = [random() - 0.5, random() - 0.5, random()];
    const from = 14;
    const to = 28;
    const f = (x: number, y: number, c: number) => a * x + b * y + c0 * c;
    const out = resizePositionEmbedding(grid(from, 2, f), 2, from, to);
    // Output pixel i samples the source at u = (i + 0.5) from / to - 0.5; its taps reach u - 2 .. u + 2.
    const at = (i: number) => ((i + 0.5) * from) / to - 0.5;
    let checked = 0;
    for (let y = 0; y < to; y++) {
      for (let x = 0; x < to; x++) {
        if (at(x) < 2 || at(x) > from - 3 || at(y) < 2 || at(y) > from - 3) continue;
        for (let c = 0; c < 2; c++) expect(out[(1 + y * to + x) * 2 + c]).toBeCloseTo(f(at(x), at(y), c), 5);
        checked++;
      }
    }
    expect(checked).toBeGreaterThan(100);
  });

  it('widens the filter when shrinking (antialiasing), with the taps worked out by hand', () => {
    // 4 -> 2 along x: output 0 is centred at 1 in source units; the filter, twice as wide, gives
    // source columns 0..3 the weights cubic(-0.25), cubic(0.25), cubic(0.75), cubic(1.25) =
    // 0.8671875, 0.8671875, 0.2265625, -0.0703125 (sum 1.890625). A column of ones at x = 0
    // therefore reads 0.8671875 / 1.890625 there (without the widening it would be 0.5625 / 1.0625).
    const out = resizePositionEmbedding(grid(4, 1, (x) => (x === 0 ? 1 : 0)), 1, 4, 2);
    expect(out[1]).toBeCloseTo(0.8671875 / 1.890625, 6);
    expect(out[3]).toBeCloseTo(0.8671875 / 1.890625, 6);
    expect(out[2]).toBeCloseTo(-0.0703125 / 1.890625, 6);
  });

  it('rejects an embedding of the wrong length', () => {
    expect(() => resizePositionEmbedding(new Float32Array(10), 3, 2, 4)).toThrow(/10 values, expected \(1 \+ 2²\) x 3/);
  });
});

describe('a model at another image size', () => {
  it('loads with pos_embed resampled and every other weight as saved', async () => {
    const small = VisionTransformer.create({ ...presets.deitTiny, imageSize: 32, patchSize: 8, width: 24, heads: 2, depth: 2, numClasses: 5, attention: 'castling', seed: 3 });
    for (const t of small.parameters().values()) t.set(randomArray(t.size, 0.2));
    const path = join(dir, 'small.safetensors');
    await small.save(path);
    const large = await VisionTransformer.load(path, { config: { imageSize: 64 } });
    expect(large.loadReport).toEqual({ initialised: [], ignored: [], resized: ['pos_embed'], castlingForm: expect.stringMatching(/^training form/) });
    const pos = large.parameters().get('pos_embed')!;
    expect(pos.shape).toEqual([1, 65, 24]);
    expect(pos.toFloat32Array()).toEqual(resizePositionEmbedding(small.parameters().get('pos_embed')!.toFloat32Array(), 24, 4, 8));
    for (const [name, t] of small.parameters()) if (name !== 'pos_embed') expect(large.parameters().get(name)!.toFloat32Array()).toEqual(t.toFloat32Array());
    const logits = await large.predict(Tensor.fromArray(randomArray(2 * 3 * 64 * 64), [2, 3, 64, 64]));
    expect(logits.shape).toEqual([2, 5]);
    expect(logits.toFloat32Array().every(Number.isFinite)).toBe(true);
    // The same in code, and back down.
    expect(VisionTransformer.from(small, { imageSize: 64 }).parameters().get('pos_embed')!.toFloat32Array()).toEqual(pos.toFloat32Array());
    expect(VisionTransformer.from(large, { imageSize: 40 }).loadReport.resized).toEqual(['pos_embed']);
    // Other mismatches are still errors.
    await expect(VisionTransformer.load(path, { config: { imageSize: 64, patchSize: 16 } })).rejects.toThrow(/'patch_embed.proj.weight' has shape \[24, 3, 8, 8\], the config needs \[24, 3, 16, 16\]/);
  });
});
