// Backward passes of the first ops, for training code: each takes what its forward saved and the
// gradient of the output, and returns the gradients of the inputs. (matmul and linear need no op
// of their own: their gradients are matmuls.)
import { runAsync } from './ops.js';
import type { Tensor } from './tensor.js';

/** dx of y = gelu(x). */
export async function geluBackward(x: Tensor, dy: Tensor): Promise<Tensor> {
  return (await runAsync('geluBackward', ['x', 'dy'], [x, dy]))[0]!;
}

/** dx of y = softmax(x) over the last axis, from y itself. */
export async function softmaxBackward(y: Tensor, dy: Tensor): Promise<Tensor> {
  return (await runAsync('softmaxBackward', ['y', 'dy'], [y, dy]))[0]!;
}

export interface LayerNormGradients {
  dx: Tensor;
  dweight: Tensor;
  dbias: Tensor;
}

/** Gradients of LayerNorm from the input, its weight, the saved mean/rstd and dy. */
export async function layerNormBackward(x: Tensor, weight: Tensor, mean: Tensor, rstd: Tensor, dy: Tensor): Promise<LayerNormGradients> {
  const [dx, dweight, dbias] = await runAsync('layerNormBackward', ['x', 'weight', 'mean', 'rstd', 'dy'], [x, weight, mean, rstd, dy]);
  return { dx: dx!, dweight: dweight!, dbias: dbias! };
}
