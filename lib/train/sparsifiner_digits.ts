// Sparsifiner on the digits, the paper's workflow end to end: train a dense softmax model,
// convert it (the predictor freshly initialised), stage 1 (the predictors learn each block's
// dense attention, backbone frozen), stage 2 (fine-tune with sparse attention, distilling from
// the dense model), then compare the held-out accuracy and the attention FLOPs.
import { VisionTransformer } from '../nn/vit.js';
import { tokenCount } from '../nn/config.js';
import { attentionFlops } from '../flops.js';
import { trainDigits, type DigitsOptions } from './digits.js';

export interface SparsifinerDigitsOptions {
  keepRate?: number;
  /** Basis coefficients kept per query (0: all r), see VitConfig.coefficientKeep. */
  coefficientKeep?: number;
  /** One token basis for both sides (P = B). */
  sharedBasis?: boolean;
  denseEpochs?: number;
  reconstructionEpochs?: number;
  finetuneEpochs?: number;
  /** Weight of the distillation from the dense model in stage 2 (0: none). */
  distillation?: number;
  seed?: number;
  onEpoch?: DigitsOptions['onEpoch'];
  onStage?: (stage: string) => void;
}

export interface SparsifinerDigitsResult {
  dense: VisionTransformer;
  sparse: VisionTransformer;
  denseAccuracy: number;
  /** Accuracy right after stage 1 (before fine-tuning). */
  reconstructedAccuracy: number;
  sparseAccuracy: number;
  /** Attention FLOPs per image and block, dense and Sparsifiner (predictor included). */
  denseAttentionFlops: number;
  sparseAttentionFlops: number;
  seconds: number;
}

export async function sparsifinerDigits(o: SparsifinerDigitsOptions = {}): Promise<SparsifinerDigitsResult> {
  const started = performance.now();
  const seed = o.seed ?? 1;
  o.onStage?.('dense softmax model');
  const dense = await trainDigits({ attention: 'softmax', epochs: o.denseEpochs ?? 12, seed, onEpoch: o.onEpoch });
  const keepRate = o.keepRate ?? 0.25;
  const sparse = VisionTransformer.from(dense.model, { attention: 'sparsifiner', keepRate, coefficientKeep: o.coefficientKeep ?? 0, sharedBasis: o.sharedBasis ?? false });
  o.onStage?.('stage 1: attention reconstruction (backbone frozen)');
  const reconstructed = await trainDigits({ model: sparse, stage: 'reconstruction', epochs: o.reconstructionEpochs ?? 2, lr: 1e-2, weightDecay: 0, seed: seed + 1, onEpoch: o.onEpoch });
  o.onStage?.('stage 2: fine-tuning with sparse attention');
  const weight = o.distillation ?? 0.5;
  const tuned = await trainDigits({
    model: sparse,
    epochs: o.finetuneEpochs ?? 3,
    lr: 3e-4,
    seed: seed + 2,
    distillation: weight > 0 ? { teacher: dense.model, weight, temperature: 2 } : undefined,
    onEpoch: o.onEpoch,
  });
  const c = sparse.config;
  const N = tokenCount(c);
  const d = c.width / c.heads;
  return {
    dense: dense.model,
    sparse,
    denseAccuracy: dense.testAccuracy,
    reconstructedAccuracy: reconstructed.testAccuracy,
    sparseAccuracy: tuned.testAccuracy,
    denseAttentionFlops: c.heads * attentionFlops('softmax', 'forward', N, d),
    sparseAttentionFlops: c.heads * attentionFlops('sparsifiner', 'forward', N, d, { keepRate, coefficientKeep: c.coefficientKeep }),
    seconds: (performance.now() - started) / 1000,
  };
}
