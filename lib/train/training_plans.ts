// Records whole training steps as plans: forward, loss, backward and the AdamW updates in one
// native pass (docs/algorithms.md sections 3-5), and Sparsifiner's reconstruction stage.
import { decays, type AdamW } from './adamw.js';
import type { PlanBuilder, Slot } from '../plan.js';
import type { Tensor } from '../tensor.js';
import type { VitConfig } from '../nn/config.js';
import { dconvView, type AuxBranch, type VitGraph } from '../nn/vit_graph.js';
import { InternalError } from '../errors.js';

export interface StepOptions {
  aux: AuxBranch | null;
  smoothing: number;
  dropPath: boolean;
  distill: { weight: number; temperature: number } | null;
}

/**
 * A training step. Inputs, in order: images, labels, the teacher's logits (with distillation),
 * the drop-path scales (two per block), then the schedule ([lr, step]). Returns the kept slots:
 * loss, correct count, then the distillation loss (with distillation) and the auxiliary
 * branch's L1 sums (one per block while it is on).
 */
export function recordTrainingStep(p: PlanBuilder, graph: VitGraph, params: Map<string, Tensor>, config: VitConfig, optimizer: AdamW, o: StepOptions): Slot[] {
  const { kept, grads } = recordLossAndGradients(p, graph, params, config, o, 1);
  recordUpdates(p, params, config, grads, optimizer, p.input('schedule'));
  return kept;
}

/**
 * Forward, loss and backward of a step (inputs images, labels, then the teacher's logits and the
 * drop-path scales when used). `weight` scales the gradient of the mean losses (cross-entropy and
 * distillation): a micro-batch's share of its batch. The L1 term of the auxiliary branch is a sum
 * over the images, so its gradient (added inside the attention backward) is never scaled.
 */
function recordLossAndGradients(p: PlanBuilder, graph: VitGraph, params: Map<string, Tensor>, config: VitConfig, o: StepOptions, weight: number): { kept: Slot[]; grads: Map<string, Slot> } {
  const images = p.input('images');
  const labels = p.input('labels');
  const teacher = o.distill ? p.input('teacherLogits') : null;
  const drop = o.dropPath ? Array.from({ length: config.depth }, (_, i) => [p.input(`drop${i}a`), p.input(`drop${i}b`)] as [Slot, Slot]) : undefined;
  const forwardOptions = { training: true, aux: o.aux, dropPath: drop };
  const f = graph.forward(images, forwardOptions);
  const [loss, ceGrad, correct] = p.op('crossEntropy', [f.logits, labels], { labelSmoothing: o.smoothing }, 3);
  let dlogits = ceGrad!;
  const extra: Slot[] = [];
  if (o.distill && teacher) {
    const [kdLoss, kdGrad] = p.op('distillation', [f.logits, teacher], o.distill, 2);
    dlogits = p.op('add', [dlogits, kdGrad!])[0]!;
    extra.push(kdLoss!);
  }
  if (weight !== 1) dlogits = p.op('scale', [dlogits], { scale: weight })[0]!;
  const grads = graph.backward(f, dlogits, forwardOptions);
  // Every parameter learns, except a Sparsifiner's predictor: its top-k passes no gradient.
  for (const name of params.keys()) {
    if (!grads.has(name) && !name.includes('.attn.predictor.')) throw new InternalError(`internal: no gradient recorded for '${name}'`);
  }
  return { kept: [loss!, correct!, ...extra, ...f.auxL1], grads };
}

/** The parameters that learn in a stage, in the model's order: the order of accumulated gradients. */
export function learningParameters(params: Map<string, Tensor>, stage: 'finetune' | 'reconstruction'): string[] {
  return [...params.keys()].filter((name) => name.includes('.attn.predictor.') === (stage === 'reconstruction'));
}

/**
 * One micro-batch of an accumulated step (no update): inputs as recordTrainingStep without the
 * schedule, then with `accumulate` the running gradient sums (one per learning parameter, in
 * learningParameters order). Returns its kept slots, then the new sums.
 */
export function recordTrainingChunk(p: PlanBuilder, graph: VitGraph, params: Map<string, Tensor>, config: VitConfig, o: StepOptions, weight: number, accumulate: boolean): Slot[] {
  const { kept, grads } = recordLossAndGradients(p, graph, params, config, o, weight);
  return [...kept, ...recordSums(p, grads, learningParameters(params, 'finetune'), accumulate)];
}

/** A micro-batch of Sparsifiner's stage 1: input images, then as recordTrainingChunk (its loss is a sum: no weight). */
export function recordReconstructionChunk(p: PlanBuilder, graph: VitGraph, params: Map<string, Tensor>, accumulate: boolean): Slot[] {
  const { losses, grads } = graph.reconstruction(p.input('images'));
  return [...losses, ...recordSums(p, grads, learningParameters(params, 'reconstruction'), accumulate)];
}

/** The update of an accumulated step: inputs the schedule, then the summed gradients of `names`. */
export function recordAccumulatedUpdate(p: PlanBuilder, params: Map<string, Tensor>, config: VitConfig, optimizer: AdamW, names: string[]): Slot[] {
  const schedule = p.input('schedule');
  const grads = new Map(names.map((name) => [name, p.input(`grad:${name}`)]));
  recordUpdates(p, params, config, grads, optimizer, schedule);
  return [];
}

/** The gradients of `names`, each added to a running sum (an input) when `accumulate`. */
function recordSums(p: PlanBuilder, grads: Map<string, Slot>, names: string[], accumulate: boolean): Slot[] {
  if (grads.size !== names.length) throw new InternalError(`internal: ${grads.size} gradients recorded, ${names.length} parameters learn`);
  return names.map((name) => {
    const g = grads.get(name);
    if (!g) throw new InternalError(`internal: no gradient recorded for '${name}'`);
    return accumulate ? p.op('add', [p.input(`sum:${name}`), g])[0]! : g;
  });
}

/**
 * Sparsifiner's stage 1: inputs images and schedule; only the predictors learn. Returns the
 * per-block reconstruction losses.
 */
export function recordReconstructionStep(p: PlanBuilder, graph: VitGraph, params: Map<string, Tensor>, config: VitConfig, optimizer: AdamW): Slot[] {
  const images = p.input('images');
  const schedule = p.input('schedule');
  const { losses, grads } = graph.reconstruction(images);
  recordUpdates(p, params, config, grads, optimizer, schedule);
  return losses;
}

/**
 * Records clipping and the AdamW update of the parameters that have a gradient in `grads`;
 * the others stay frozen (the backbone in Sparsifiner's reconstruction stage, the predictor
 * while fine-tuning).
 */
function recordUpdates(p: PlanBuilder, params: Map<string, Tensor>, config: VitConfig, grads: Map<string, Slot>, optimizer: AdamW, schedule: Slot): void {
  const o = optimizer.options;
  let norm2: Slot | null = null;
  if (o.maxGradNorm > 0) for (const g of grads.values()) norm2 = p.op('sumSquares', norm2 ? [g, norm2] : [g])[0]!;
  for (const [name, grad] of grads) {
    const tensor = params.get(name);
    if (!tensor) throw new InternalError(`internal: gradient for unknown parameter '${name}'`);
    const { m, v } = optimizer.moments.get(name)!;
    const isDconv = name.endsWith('.attn.dconv.weight');
    // The dconv gradient comes shaped like the attention op's view of the weight.
    const view = (t: Tensor) => (isDconv ? dconvView(t, config.convForm) : t);
    p.op('adamw', [p.constant(view(tensor), name), grad, p.constant(view(m)), p.constant(view(v)), schedule, norm2], {
      beta1: o.betas[0],
      beta2: o.betas[1],
      eps: o.eps,
      weightDecay: decays(name, tensor.shape) ? o.weightDecay : 0,
      maxGradNorm: o.maxGradNorm,
    }, 0);
  }
}
