// One training step of a VisionTransformer (model.trainStep): the arguments checked (images and
// labels by the model, the optimizer and the drop-path scales here), then, in the step's turn,
// one plan of forward, loss, backward and the AdamW update (training_plans.ts), or micro-batches
// accumulated into one update (micro_batch.ts).
import { attachMembers } from '../attach.js';
import type { VitConfig } from '../nn/config.js';
import { checkLabels, imagesError } from '../nn/model_inputs.js';
import { SeededRandom } from '../nn/random.js';
import { VisionTransformer, internals } from '../nn/vit.js';
import { Tensor } from '../tensor.js';
import type { AdamW } from './adamw.js';
import { accumulatedReconstructionStep, accumulatedTrainingStep, checkMicroBatch, type AccumulationContext } from './micro_batch.js';
import { castlingAt, type CastlingSchedule } from './schedule.js';
import { recordReconstructionStep, recordTrainingStep } from './training_plans.js';
import { DisposedError, InvalidArgTypeError, InvalidArgValueError } from '../errors.js';
import { requireFloat32Storage } from '../nn/weight_storage.js';

export interface TrainStepOptions {
  /** Label smoothing of the cross-entropy (from 0 up to, not including, 1). */
  labelSmoothing?: number;
  /**
   * Castling models: drive the auxiliary branch's threshold (and L1 weight) by the fraction of
   * training done (the optimizer's step / totalSteps). Without it the branch keeps its state.
   */
  castling?: CastlingSchedule;
  /**
   * Sparsifiner models: 'finetune' (default) trains the whole model with sparse attention (the
   * predictor, which gets no gradient through its top-k, stays as it is); 'reconstruction' is
   * stage 1: the backbone frozen, each predictor learns the dense attention of its block.
   */
  stage?: 'finetune' | 'reconstruction';
  /** Adds distillation from a teacher's logits (e.g. the dense model a Sparsifiner was made from). */
  distillation?: { teacher: VisionTransformer; weight?: number; temperature?: number };
  /**
   * Gradient accumulation: the most images per forward and backward pass. A larger batch runs as
   * micro-batches of this many images (the last may be smaller), their gradients summed (each
   * weighted by its share of the batch: the full batch's mean-loss gradient up to float rounding),
   * then clipped and applied in one optimizer step. Activation memory follows the micro-batch.
   * Absent: the whole batch in one pass.
   */
  microBatch?: number;
}

export interface TrainStepResult {
  /** Cross-entropy plus the L1 term when it is on. */
  loss: number;
  /** Fraction of the batch classified correctly (before the update); NaN in the reconstruction stage. */
  accuracy: number;
  /** Learning rate of this step. */
  lr: number;
  /** Castling models: the auxiliary branch's threshold this step (null: branch off). */
  tau: number | null;
}

declare module '../nn/vit.js' {
  interface VisionTransformer {
    /**
     * One training step on a batch: forward keeping what the backward needs, softmax cross-entropy,
     * backward of every layer, optional clipping, and the AdamW update, all in one native pass.
     * labels: class indices, one per image.
     */
    trainStep(images: Tensor, labels: Tensor | ArrayLike<number>, optimizer: AdamW, options?: TrainStepOptions): Promise<TrainStepResult>;
  }
}

const training: Pick<VisionTransformer, 'trainStep'> & ThisType<VisionTransformer> = {
  async trainStep(images: Tensor, labels: Tensor | ArrayLike<number>, optimizer: AdamW, options: TrainStepOptions = {}): Promise<TrainStepResult> {
    const inner = internals(this);
    const batch = inner.checkImages(images, 'trainStep');
    requireFloat32Storage(this.config, 'trainStep');
    const labelTensor = checkLabels(this.config, labels, batch);
    const ownLabels = !(labels instanceof Tensor);
    try {
      checkOptimizer(inner.params, optimizer);
      const smoothing = options.labelSmoothing ?? 0;
      if (!(smoothing >= 0 && smoothing < 1)) throw new InvalidArgValueError(`trainStep: labelSmoothing is ${smoothing}, expected a number in [0, 1)`);
      const micro = checkMicroBatch(options.microBatch, batch);
      if (options.castling && this.config.attention === 'castling' && !inner.castledForGood && !optimizer.options.totalSteps) {
        throw new InvalidArgValueError('trainStep: a castling schedule needs the optimizer to know totalSteps');
      }
      if (options.stage === 'reconstruction' && this.config.attention !== 'sparsifiner') throw new InvalidArgValueError("trainStep: the 'reconstruction' stage is for sparsifiner models");
      const distill = options.distillation;
      if (distill && options.stage !== 'reconstruction') {
        if (!(distill.teacher instanceof VisionTransformer)) throw new InvalidArgTypeError('trainStep: distillation.teacher must be a VisionTransformer');
        if (distill.teacher === this) throw new InvalidArgValueError('trainStep: distillation.teacher is the model being trained; the teacher is another model (e.g. the dense model it was made from)');
        if (distill.teacher.config.numClasses !== this.config.numClasses) throw new InvalidArgValueError(`trainStep: the teacher has ${distill.teacher.config.numClasses} classes, this model ${this.config.numClasses}`);
      }
      // The arguments are checked now; the step runs in its turn, after every call made before it.
      return await inner.queue.run('update', 'trainStep', () => trainStepNow(this, images, labelTensor, optimizer, options, smoothing, micro));
    } finally {
      if (ownLabels) labelTensor.dispose();
    }
  },
};
attachMembers(VisionTransformer.prototype, training);

/** trainStep() in its turn, its arguments checked. */
async function trainStepNow(model: VisionTransformer, images: Tensor, labels: Tensor, optimizer: AdamW, options: TrainStepOptions, smoothing: number, micro: number): Promise<TrainStepResult> {
  const inner = internals(model);
  inner.live();
  const batch = images.shape[0]!;
  if (options.castling && model.config.attention === 'castling' && !inner.castledForGood) {
    const state = castlingAt(optimizer.fraction, options.castling);
    inner.setAux(state.active ? { tau: state.tau, l1: state.l1 } : null);
  }
  if (options.stage === 'reconstruction') return reconstructionStep(model, images, optimizer, micro);
  const distill = options.distillation;
  const dropScales = dropPathScales(model.config, batch, optimizer.step);
  const stepOptions = { aux: inner.auxBranch, smoothing, dropPath: dropScales !== null, distill: distill ? { weight: distill.weight ?? 1, temperature: distill.temperature ?? 1 } : null };
  const key = `train:${batch}:${JSON.stringify(stepOptions)}`;
  const tau = inner.auxBranch?.tau ?? null;
  if (micro < batch) {
    const teacher = distill ? (chunk: Tensor) => distill.teacher.predict(chunk) : null;
    const context = accumulation(model, `${key}:micro${micro}`, optimizer);
    const step = await accumulatedTrainingStep(context, images, labels, stepOptions, micro, dropScales, teacher).catch((error: unknown) => {
      throw imagesError('trainStep', error);
    });
    return { loss: step.loss, accuracy: step.correct / batch, lr: step.lr, tau };
  }
  const teacherLogits = distill ? await distill.teacher.predict(images) : null;
  const plan = inner.trainingPlan(key, optimizer, (p, graph) => recordTrainingStep(p, graph, inner.params, model.config, optimizer, stepOptions));
  let lr: number;
  let outputs: Tensor[];
  try {
    ({ lr, result: outputs } = await optimizer.takeStep(() => plan.run(images, labels, ...(teacherLogits ? [teacherLogits] : []), ...(dropScales ?? []), optimizer.scheduleTensor)));
  } catch (error) {
    throw imagesError('trainStep', error);
  } finally {
    teacherLogits?.dispose();
  }
  const [loss, correct, ...extra] = outputs.map((t) => {
    const v = t.toFloat32Array()[0]!;
    t.dispose();
    return v;
  });
  // Extra outputs: the distillation loss, then the L1 terms of the auxiliary branch.
  const distillLoss = distill ? extra.shift()! : 0;
  const l1Total = extra.reduce((a, b) => a + b, 0) * (inner.auxBranch?.l1 ?? 0);
  return { loss: loss! + distillLoss + l1Total, accuracy: correct! / batch, lr, tau };
}

/** Sparsifiner stage 1: only the predictors learn, from the dense attention of their block. */
async function reconstructionStep(model: VisionTransformer, images: Tensor, optimizer: AdamW, micro: number): Promise<TrainStepResult> {
  const inner = internals(model);
  const batch = images.shape[0]!;
  if (micro < batch) {
    const step = await accumulatedReconstructionStep(accumulation(model, `reconstruct:${batch}:micro${micro}`, optimizer), images, micro);
    return { loss: step.lossSum / batch, accuracy: Number.NaN, lr: step.lr, tau: null };
  }
  const plan = inner.trainingPlan(`reconstruct:${batch}`, optimizer, (p, graph) => recordReconstructionStep(p, graph, inner.params, model.config, optimizer));
  const { lr, result: outputs } = await optimizer.takeStep(() => plan.run(images, optimizer.scheduleTensor));
  const loss = outputs.reduce((a, t) => {
    const v = t.toFloat32Array()[0]!;
    t.dispose();
    return a + v;
  }, 0);
  return { loss: loss / batch, accuracy: Number.NaN, lr, tau: null };
}

/** What a step accumulated over micro-batches needs of the model; its plans are the group `group`. */
function accumulation(model: VisionTransformer, group: string, optimizer: AdamW): AccumulationContext {
  const inner = internals(model);
  return { params: inner.params, config: model.config, optimizer, plan: (key, record) => inner.trainingPlan(`${group}|${key}`, optimizer, record) };
}

/** Throws unless the optimizer was made from exactly these parameter tensors. */
export function checkOptimizer(params: Map<string, Tensor>, optimizer: AdamW): void {
  if (typeof optimizer !== 'object' || optimizer === null || !(optimizer.params instanceof Map)) {
    throw new InvalidArgTypeError(`trainStep: the optimizer is ${optimizer === null ? 'null' : typeof optimizer}, expected new AdamW(model.parameters(), { lr })`);
  }
  if (optimizer.disposed) throw new DisposedError('trainStep: the optimizer has been disposed: make a new AdamW(model.parameters(), ...)');
  for (const [name, t] of params) {
    if (optimizer.params.get(name) !== t) throw new InvalidArgValueError(`trainStep: the optimizer was not made from this model's parameters (missing '${name}'): use new AdamW(model.parameters(), ...)`);
  }
}

/** Drop-path scales for a step: per block and branch, [batch] values 0 or 1/(1-p); null when off. */
export function dropPathScales(config: VitConfig, batch: number, step: number): Tensor[] | null {
  const { dropPathRate: rate, depth, seed } = config;
  if (rate <= 0) return null;
  const rng = new SeededRandom((seed * 1_000_003 + step * 7919 + 1) >>> 0);
  const scales: Tensor[] = [];
  for (let i = 0; i < depth; i++) {
    // Linearly increasing drop probability over depth, as in DeiT.
    const p = depth > 1 ? (rate * i) / (depth - 1) : rate;
    for (let branch = 0; branch < 2; branch++) {
      scales.push(Tensor.fromArray(Float32Array.from({ length: batch }, () => (rng.next() < p ? 0 : 1 / (1 - p))), [batch]));
    }
  }
  return scales;
}
