// Sparsifiner on the digits, the paper's workflow end to end: train a dense softmax model, then
// sparsify it (convert, stage 1, stage 2: sparsify.ts) and compare the held-out accuracy and
// the attention FLOPs.
import type { VisionTransformer } from '../nn/vit.js';
import { WHOLE_PIXEL_SHIFTS, trainDigits, type DigitsOptions } from './digits.js';
import { sparsify, type SparsifyResult, type TrainingRun } from './sparsify.js';

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
  /** The dense model's peak learning rate (trainDigits' default). */
  denseLr?: number;
  /** Images per step in every stage (trainDigits' default). */
  batchSize?: number;
  /** Use only this many training images in every stage (quick runs). */
  limit?: number;
  seed?: number;
  onEpoch?: DigitsOptions['onEpoch'];
  onStage?: (stage: string) => void;
}

export interface SparsifinerDigitsResult extends SparsifyResult {
  dense: VisionTransformer;
  denseAccuracy: number;
  seconds: number;
}

export async function sparsifinerDigits(o: SparsifinerDigitsOptions = {}): Promise<SparsifinerDigitsResult> {
  const started = performance.now();
  const seed = o.seed ?? 1;
  o.onStage?.('dense softmax model');
  // The augmentation its figures were measured with (bench/RESULTS.md): its short dense run and
  // stages learn faster from whole-pixel shifts than from the main job's stronger warping. And the
  // label smoothing and last step's weights it was measured with (the main job's 0.05 is not tried here).
  const data = { batchSize: o.batchSize, limit: o.limit, onEpoch: o.onEpoch, ...WHOLE_PIXEL_SHIFTS, labelSmoothing: 0.1, weightAverage: 0 };
  const dense = await trainDigits({ attention: 'softmax', epochs: o.denseEpochs ?? 12, lr: o.denseLr, seed, ...data });
  const onDigits: TrainingRun = async (run) => (await trainDigits({ ...run, ...data })).testAccuracy;
  const result = await sparsify(dense.model, onDigits, {
    keepRate: o.keepRate,
    coefficientKeep: o.coefficientKeep,
    sharedBasis: o.sharedBasis,
    reconstructionEpochs: o.reconstructionEpochs,
    finetuneEpochs: o.finetuneEpochs,
    distillation: o.distillation,
    seed,
    onStage: o.onStage,
  });
  return { ...result, dense: dense.model, denseAccuracy: dense.testAccuracy, seconds: (performance.now() - started) / 1000 };
}
