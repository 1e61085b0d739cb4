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
