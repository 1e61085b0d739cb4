// Attention on tensors laid out (batch, heads, tokens, headDim): flash-style softmax attention
// (the baseline) and Castling-ViT's linear-angular attention with its depthwise convolution and
// the optional auxiliary masked softmax branch. Each forward returns what its backward needs.
import { runAsync } from './ops.js';
import type { Tensor } from './tensor.js';
import { InvalidArgTypeError, InvalidArgValueError } from './errors.js';

export interface SoftmaxAttentionResult {
  y: Tensor;
  /** Row log-sum-exp of the scores, kept for the backward. */
  lse: Tensor;
}

export interface SoftmaxAttentionOptions {
  /** Score scale; 1/sqrt(headDim) by default. */
  scale?: number;
}

function scaleAttrs(o: { scale?: number }): { scale?: number } {
  if (o.scale !== undefined && !(Number.isFinite(o.scale) && o.scale > 0)) throw new InvalidArgValueError(`attention: scale is ${o.scale}, expected a positive number`);
  return o.scale === undefined ? {} : { scale: o.scale };
}

/** y = softmax(scale q kᵀ) v, tiled with an online softmax: no tokens x tokens buffer. */
export async function softmax(q: Tensor, k: Tensor, v: Tensor, options: SoftmaxAttentionOptions = {}): Promise<SoftmaxAttentionResult> {
  const [y, lse] = await runAsync('attentionSoftmax', ['q', 'k', 'v'], [q, k, v], scaleAttrs(options));
  return { y: y!, lse: lse! };
}

export interface AttentionGradients {
  dq: Tensor;
  dk: Tensor;
  dv: Tensor;
}

/** Gradients of softmax attention, recomputing the probabilities from the saved lse. */
export async function softmaxBackward(q: Tensor, k: Tensor, v: Tensor, saved: SoftmaxAttentionResult, dy: Tensor, options: SoftmaxAttentionOptions = {}): Promise<AttentionGradients> {
  const [dq, dk, dv] = await runAsync('attentionSoftmaxBackward', ['q', 'k', 'v', 'y', 'lse', 'dy'], [q, k, v, saved.y, saved.lse, dy], scaleAttrs(options));
  return { dq: dq!, dk: dk!, dv: dv! };
}

export interface LinearAngularOptions {
  /** 'tokens': a (heads, K) kernel along the token axis (default); 'spatial': (heads, K, K) over the patch grid. */
  form?: 'tokens' | 'spatial';
  /** The auxiliary masked softmax branch (training): entries of softmax(q kᵀ · auxScale) above tau are kept. */
  aux?: { tau?: number; l1?: number; scale?: number };
}

export interface LinearAngularResult {
  y: Tensor;
  /** With the auxiliary branch: the sum of the kept probabilities (the L1 term before its weight). */
  l1?: number;
  /** @internal What the backward reads. */
  saved: Tensor[];
}

function linearAngularAttrs(o: LinearAngularOptions) {
  const form = o.form ?? 'tokens';
  if (form !== 'tokens' && form !== 'spatial') throw new InvalidArgTypeError(`linearAngular: form is '${String(form)}', expected 'tokens' or 'spatial'`);
  const attrs: Record<string, number | boolean> = { form: form === 'tokens' ? 0 : 1, aux: o.aux !== undefined };
  if (o.aux) {
    const tau = o.aux.tau ?? 0.02;
    if (!(tau >= 0 && tau <= 1)) throw new InvalidArgValueError(`linearAngular: aux.tau is ${tau}, expected a number in [0, 1]`);
    attrs.tau = tau;
    attrs.l1 = o.aux.l1 ?? 0;
    if (o.aux.scale !== undefined) attrs.auxScale = o.aux.scale;
  }
  return attrs;
}

const linearAngularInputs = ['q', 'k', 'v', 'dconvWeight'];

/**
 * Castling-ViT linear-angular attention: normalise q and k, S = k̂ᵀ v, z = 0.5 v + q̂ S / π
 * (+ the masked softmax branch), y = normalize(z) + dconv(v). Linear in the number of tokens.
 */
export async function linearAngular(q: Tensor, k: Tensor, v: Tensor, dconvWeight: Tensor, options: LinearAngularOptions = {}): Promise<LinearAngularResult> {
  const outputs = await runAsync('attentionLinearAngular', linearAngularInputs, [q, k, v, dconvWeight], linearAngularAttrs(options));
  const [y, ...saved] = outputs;
  const result: LinearAngularResult = { y: y!, saved };
  if (options.aux) {
    const l1 = saved.pop()!;
    result.l1 = l1.toFloat32Array()[0]!;
    l1.dispose();
  }
  return result;
}

export interface LinearAngularGradients extends AttentionGradients {
  dWeight: Tensor;
}

/** Gradients of linearAngular (with the L1 term's gradient when options.aux.l1 is set). */
export async function linearAngularBackward(
  q: Tensor,
  k: Tensor,
  v: Tensor,
  dconvWeight: Tensor,
  forward: LinearAngularResult,
  dy: Tensor,
  options: LinearAngularOptions = {},
): Promise<LinearAngularGradients> {
  // The saved tensors: qnorm, knorm, S, znorm, then with the branch lse, auxOut, auxMass.
  const saved: Array<Tensor | null> = [...forward.saved];
  while (saved.length < 7) saved.push(null);
  const names = [...linearAngularInputs, 'qnorm', 'knorm', 'S', 'znorm', 'lse', 'auxOut', 'auxMass', 'dy'];
  const [dq, dk, dv, dWeight] = await runAsync('attentionLinearAngularBackward', names, [q, k, v, dconvWeight, ...saved, dy], linearAngularAttrs(options));
  return { dq: dq!, dk: dk!, dv: dv!, dWeight: dWeight! };
}
