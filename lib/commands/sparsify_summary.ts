// The closing lines of the CLI's Sparsifiner workflows (`train mnist` and `train folder` with
// --attention sparsifiner): accuracy at each stage against the dense model, and the FLOPs saved.
import type { SparsifyResult } from '../train/sparsify.js';
import { accuracyText as percent } from './format.js';

export function sparsifySummary(result: SparsifyResult, denseAccuracy: number): string[] {
  const saved = 1 - result.sparseAttentionFlops / result.denseAttentionFlops;
  return [
    `dense softmax model: held-out accuracy ${percent(denseAccuracy)}`,
    `sparsifiner (keep ${result.sparse.config.keepRate}): ${percent(result.reconstructedAccuracy)} after stage 1, ${percent(result.sparseAccuracy)} after stage 2`,
    `attention FLOPs per block and image: ${result.denseAttentionFlops} dense, ${result.sparseAttentionFlops} sparsifiner (predictor included): ` +
      (saved >= 0 ? `${(100 * saved).toFixed(1)}% fewer` : `${(-100 * saved).toFixed(1)}% more (at this token count the predictor costs more than it saves)`),
  ];
}
