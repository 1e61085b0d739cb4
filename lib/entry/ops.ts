/**
 * castling-vit/ops: tensors' building blocks below the model: the ops (each as a promise and as a
 * Sync call), their gradients, the attention kernels, compiled plans of ops, and FLOP counts.
 *
 * @packageDocumentation
 */
export {
  matmul,
  matmulSync,
  linear,
  linearSync,
  add,
  addSync,
  scale,
  scaleSync,
  gelu,
  geluSync,
  softmax,
  softmaxSync,
  layerNorm,
  layerNormSync,
  layerNormWithStats,
  type MatmulOptions,
  type LinearOptions,
  type LayerNormOptions,
  type LayerNormResult,
} from '../ops.js';
export * as backward from '../backward.js';
export * as attention from '../attention.js';
export { PlanBuilder, CompiledPlan, Slot } from '../plan.js';
export { attentionFlops, type AttentionFlopKind, type FlopOptions } from '../flops.js';
export { vitFlops, type VitFlopConfig } from '../nn/model_flops.js';
