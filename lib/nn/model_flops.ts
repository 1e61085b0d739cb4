// A ViT's FLOPs per image, from its config: the GEMMs its sizes give and each head's attention
// as lib/flops.ts counts it.
import { attentionFlops } from '../flops.js';
import type { VitConfig } from './config.js';

/** The sizes of a ViT that its FLOPs depend on (the attention's own options may be left to their defaults). */
export type VitFlopConfig = Pick<VitConfig, 'imageSize' | 'patchSize' | 'inChannels' | 'numClasses' | 'width' | 'depth' | 'heads' | 'mlpRatio' | 'attention'> &
  Partial<Pick<VitConfig, 'convKernel' | 'keepRate' | 'coefficientKeep' | 'distillationToken'>>;

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
