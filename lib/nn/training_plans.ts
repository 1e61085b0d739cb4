// Records whole training steps as plans: forward, loss, backward and the AdamW updates in one
// native pass (ALGORITHMS.md sections 3-5), and Sparsifiner's reconstruction stage.
import { decays, type AdamW } from '../train/adamw.js';
import type { PlanBuilder, Slot } from '../plan.js';
import type { Tensor } from '../tensor.js';
import type { VitConfig } from './config.js';
import { dconvView, type AuxBranch, type VitGraph } from './vit_graph.js';

export interface StepOptions {
  aux: AuxBranch | null;
  smoothing: number;
  dropPath: boolean;
  distill: { weight: number; temperature: number } | null;
}

/**
 * A training step. Inputs, in order: images, labels, schedule ([lr, step]), then the teacher's
 * logits (with distillation) and the drop-path scales (two per block). Returns the kept slots:
 * loss, correct count, then the distillation loss (with distillation) and the auxiliary
 * branch's L1 sums (one per block while it is on).
 */
export function recordTrainingStep(p: PlanBuilder, graph: VitGraph, params: Map<string, Tensor>, config: VitConfig, optimizer: AdamW, o: StepOptions): Slot[] {
  const images = p.input('images');
  const labels = p.input('labels');
  const schedule = p.input('schedule');
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
  const grads = graph.backward(f, dlogits, forwardOptions);
  // Every parameter learns, except a Sparsifiner's predictor: its top-k passes no gradient.
  for (const name of params.keys()) {
    if (!grads.has(name) && !name.includes('.attn.predictor.')) throw new Error(`internal: no gradient recorded for '${name}'`);
  }
  recordUpdates(p, params, config, grads, optimizer, schedule);
  return [loss!, correct!, ...extra, ...f.auxL1];
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
    if (!tensor) throw new Error(`internal: gradient for unknown parameter '${name}'`);
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
