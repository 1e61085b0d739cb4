// Position embeddings for another image size: the patch tokens' embeddings form a grid, which is
// resampled to the new grid (the class token's embedding is kept), so that weights trained at
// 224² load into a model at 448² (and back). The filter is the one timm's resample_abs_pos_embed
// gets from torch.nn.functional.interpolate(mode='bicubic', antialias=True): PIL's bicubic
// (a = -0.5), widened when shrinking, its taps clipped to the grid and renormalised (matches
// torch's to float32 rounding: test/torch_reference.test.ts).

import { InvalidArgValueError } from '../errors.js';

/** Keys' cubic convolution kernel with a = -0.5 (PIL's and PyTorch's antialiased bicubic). */
function cubic(x: number): number {
  const a = -0.5;
  const t = Math.abs(x);
  if (t < 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
  if (t < 2) return (((t - 5) * t + 8) * t - 4) * a;
  return 0;
}

/** For each output position of a 1-D resize, its first input tap and the taps' weights. */
function taps(inSize: number, outSize: number): Array<{ first: number; weights: number[] }> {
  const scale = inSize / outSize;
  const widen = Math.max(scale, 1); // shrinking spreads the filter over more inputs
  const support = 2 * widen;
  return Array.from({ length: outSize }, (_, i) => {
    const centre = scale * (i + 0.5);
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const end = Math.min(Math.trunc(centre + support + 0.5), inSize);
    const weights = Array.from({ length: end - first }, (_, j) => cubic((j + first - centre + 0.5) / widen));
    const total = weights.reduce((a, w) => a + w, 0);
    return { first, weights: weights.map((w) => w / total) };
  });
}

/**
 * pos_embed [1, prefix + from², width] to [1, prefix + to², width]: the grid of patch tokens
 * resampled bicubically (rows, then columns, in float64), the prefix tokens copied.
 */
export function resizePositionEmbedding(pos: Float32Array, width: number, from: number, to: number, prefix = 1): Float32Array {
  if (pos.length !== (prefix + from * from) * width) throw new InvalidArgValueError(`resizePositionEmbedding: ${pos.length} values, expected (${prefix} + ${from}²) x ${width}`);
  const out = new Float32Array((prefix + to * to) * width);
  out.set(pos.subarray(0, prefix * width));
  const across = taps(from, to);
  // Pass 1, along x: from x from -> from x to (row y of the source, column x of the output).
  const half = new Float64Array(from * to * width);
  for (let y = 0; y < from; y++) {
    across.forEach(({ first, weights }, x) => {
      const dst = (y * to + x) * width;
      weights.forEach((w, j) => {
        const src = (prefix + y * from + first + j) * width;
        for (let c = 0; c < width; c++) half[dst + c]! += w * pos[src + c]!;
      });
    });
  }
  // Pass 2, along y: from x to -> to x to.
  across.forEach(({ first, weights }, y) => {
    for (let x = 0; x < to; x++) {
      const dst = (prefix + y * to + x) * width;
      const sum = new Float64Array(width);
      weights.forEach((w, j) => {
        const src = ((first + j) * to + x) * width;
        for (let c = 0; c < width; c++) sum[c]! += w * half[src + c]!;
      });
      out.set(sum, dst);
    }
  });
  return out;
}
