// FLOP counts of the attention kinds, per head (a multiply-add counts as 2; the paper's MACs are
// half of these). Normalisations, exponentials and the top-k are not counted.

export type AttentionFlopKind = 'softmax' | 'castling' | 'sparsifiner';

export interface FlopOptions {
  /** Castling: the depthwise convolution's taps along the token axis (9 by default). */
  kernel?: number;
  /** Sparsifiner: the fraction of keys kept per query (0.25 by default). */
  keepRate?: number;
  /** Sparsifiner: count the predictor's projections to d/2 (2 N d², on by default). */
  withProjections?: boolean;
  /** Sparsifiner: basis coefficients kept per query (0 or absent: all r). */
  coefficientKeep?: number;
}

/**
 * FLOPs of one head's attention over N tokens of width d.
 * - softmax: q kᵀ and A v, 2 N² d each; the backward recomputes the scores and forms dV, dP,
 *   dQ and dK: 10 N² d.
 * - castling (linear-angular): S = k̂ᵀ v and q̂ S, 2 N d² each, plus the K-tap convolution
 *   (2 N d K); the backward doubles each.
 * - sparsifiner: the predictor (projections 2 N d², K' = k'ᵀ P and the logits N d r each,
 *   Â = C Bᵀ 2 N² r, r = floor(N / 8), or 2 N² c with the top-c coefficients) and attention over kk = ceil(keepRate N) kept keys per
 *   row, the class token's row over all N: 4 d ((N - 1) kk + N). The backward is the sparse
 *   attention's only (2.5 times its forward): the predictor gets no gradient.
 */
export function attentionFlops(kind: AttentionFlopKind, pass: 'forward' | 'backward', N: number, d: number, o: FlopOptions = {}): number {
  if (kind === 'softmax') return (pass === 'forward' ? 4 : 10) * N * N * d;
  if (kind === 'castling') return (pass === 'forward' ? 1 : 2) * (4 * N * d * d + 2 * N * d * (o.kernel ?? 9));
  const r = Math.max(1, Math.floor(N / 8));
  const kk = Math.min(N, Math.max(1, Math.ceil((o.keepRate ?? 0.25) * N)));
  const sparse = 4 * d * ((N - 1) * kk + N);
  if (pass === 'backward') return 2.5 * sparse;
  const combined = o.coefficientKeep ? Math.min(o.coefficientKeep, r) : r;
  return ((o.withProjections ?? true) ? 2 * N * d * d : 0) + 2 * N * d * r + 2 * N * N * combined + sparse;
}

/** The sizes of a ViT that its FLOPs depend on (a VitConfig has them all). */
export interface VitFlopConfig {
  imageSize: number;
  patchSize: number;
  inChannels: number;
  numClasses: number;
  width: number;
  depth: number;
  heads: number;
  mlpRatio: number;
  attention: AttentionFlopKind;
  convKernel?: number;
  keepRate?: number;
  coefficientKeep?: number;
  distillationToken?: boolean;
}

/**
 * FLOPs of one image through a ViT: the patch embedding, per block the qkv, projection and MLP
 * GEMMs and each head's attention (attentionFlops), and the classifier on the prefix tokens.
 * 'train' is a training step: the forward, then a backward of twice each GEMM's FLOPs (dX and
 * dW) and the attention's backward. LayerNorm, GELU, softmax normalisations and the optimizer are
 * not counted (a few percent); neither is castling's auxiliary softmax branch in training form.
 */
export function vitFlops(c: VitFlopConfig, pass: 'forward' | 'train'): number {
  const grid = Math.floor(c.imageSize / c.patchSize);
  const prefix = c.distillationToken ? 2 : 1;
  const N = grid * grid + prefix;
  const w = c.width;
  const d = w / c.heads;
  const hidden = Math.round(w * c.mlpRatio);
  const patch = 2 * grid * grid * c.inChannels * c.patchSize * c.patchSize * w;
  const blockGemms = 2 * N * w * (3 * w) + 2 * N * w * w + 2 * 2 * N * w * hidden;
  const head = 2 * prefix * w * c.numClasses;
  const gemms = patch + c.depth * blockGemms + head;
  const options = { kernel: c.convKernel, keepRate: c.keepRate, coefficientKeep: c.coefficientKeep };
  const attention = (pass: 'forward' | 'backward') => c.depth * c.heads * attentionFlops(c.attention, pass, N, d, options);
  if (pass === 'forward') return gemms + attention('forward');
  return 3 * gemms + attention('forward') + attention('backward');
}
