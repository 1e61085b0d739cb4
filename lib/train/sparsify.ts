// The Sparsifiner paper's workflow from a trained dense (softmax) model, for any data a training
// loop can run on (the digits, a folder of images): convert the model (the predictors freshly
// initialised), stage 1 (each predictor learns its block's dense attention, backbone frozen),
// stage 2 (fine-tune the whole model with sparse attention, distilling from the dense model's
// logits), and count the attention FLOPs each way.
import { attentionFlops } from '../flops.js';
import { tokenCount } from '../nn/config.js';
import { VisionTransformer } from '../nn/vit.js';
import type { TrainStepOptions } from './train_step.js';
import { InvalidArgValueError } from '../errors.js';

/** One training run of the workflow on the data at hand; resolves to the held-out accuracy. */
export type TrainingRun = (run: {
  model: VisionTransformer;
  epochs: number;
  lr: number;
  /** Absent: the loop's default. */
  weightDecay?: number;
  seed: number;
  stage?: TrainStepOptions['stage'];
  distillation?: TrainStepOptions['distillation'];
}) => Promise<number>;

export interface SparsifyOptions {
  keepRate?: number;
  /** Basis coefficients kept per query (0: all r), see VitConfig.coefficientKeep. */
  coefficientKeep?: number;
  /** One token basis for both sides (P = B). */
  sharedBasis?: boolean;
  reconstructionEpochs?: number;
  /** Stage 1's learning rate: the predictors start from scratch (default 1e-2). */
  reconstructionLr?: number;
  finetuneEpochs?: number;
  /** Stage 2's peak learning rate (default 3e-4). */
  finetuneLr?: number;
  /** Weight of the distillation from the dense model in stage 2 (default 0.5; 0: none). */
  distillation?: number;
  /** Stage 1 trains with seed + 1, stage 2 with seed + 2. */
  seed?: number;
  onStage?: (stage: string) => void;
  /**
   * Goes on with a workflow that was interrupted (a training checkpoint of stage 1 or 2): `sparse`
   * is its Sparsifiner model as checkpointed; stage 1 is skipped when it was done (its accuracy
   * given). The run of that stage is called as it would have been, to resume from its checkpoint.
   */
  resume?: { sparse: VisionTransformer; stage: 'reconstruction' | 'finetune'; reconstructedAccuracy?: number };
}

export interface SparsifyResult {
  sparse: VisionTransformer;
  /** Held-out accuracy right after stage 1 (before fine-tuning). */
  reconstructedAccuracy: number;
  sparseAccuracy: number;
  /** Attention FLOPs per image and block, dense and Sparsifiner (predictor included). */
  denseAttentionFlops: number;
  sparseAttentionFlops: number;
}

/** Makes a Sparsifiner model from `dense` (left as it is) through stages 1 and 2, each a `train` run. */
export async function sparsify(dense: VisionTransformer, train: TrainingRun, o: SparsifyOptions = {}): Promise<SparsifyResult> {
  if (dense.config.attention !== 'softmax') throw new InvalidArgValueError(`sparsify: a Sparsifiner model is made from a softmax model, not a ${dense.config.attention} one`);
  const seed = o.seed ?? 1;
  const keepRate = o.keepRate ?? 0.25;
  const sparse = o.resume?.sparse ?? VisionTransformer.from(dense, { attention: 'sparsifiner', keepRate, coefficientKeep: o.coefficientKeep ?? 0, sharedBasis: o.sharedBasis ?? false });
  let reconstructedAccuracy = o.resume?.reconstructedAccuracy ?? Number.NaN;
  let sparseAccuracy: number;
  try {
    if (o.resume?.stage !== 'finetune') {
      o.onStage?.('stage 1: attention reconstruction (backbone frozen)');
      reconstructedAccuracy = await train({ model: sparse, stage: 'reconstruction', epochs: o.reconstructionEpochs ?? 2, lr: o.reconstructionLr ?? 1e-2, weightDecay: 0, seed: seed + 1 });
    }
    o.onStage?.('stage 2: fine-tuning with sparse attention');
    const weight = o.distillation ?? 0.5;
    sparseAccuracy = await train({
      model: sparse,
      epochs: o.finetuneEpochs ?? 3,
      lr: o.finetuneLr ?? 3e-4,
      seed: seed + 2,
      distillation: weight > 0 ? { teacher: dense, weight, temperature: 2 } : undefined,
    });
  } catch (error) {
    if (!o.resume) sparse.dispose(); // made here (a resumed one is the caller's)
    throw error;
  }
  const c = sparse.config;
  const N = tokenCount(c);
  const d = c.width / c.heads;
  return {
    sparse,
    reconstructedAccuracy,
    sparseAccuracy,
    denseAttentionFlops: c.heads * attentionFlops('softmax', 'forward', N, d),
    sparseAttentionFlops: c.heads * attentionFlops('sparsifiner', 'forward', N, d, { keepRate: c.keepRate, coefficientKeep: c.coefficientKeep }),
  };
}
