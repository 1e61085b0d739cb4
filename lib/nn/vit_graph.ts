// Records a ViT's forward pass (and for training its backward pass and the AdamW updates) into a
// plan. Inference fuses GELU and the residual into the GEMMs; training keeps what the backward
// needs (LayerNorm statistics, pre-activations, attention state), and the plan frees each of
// these right after the backward has read it.
import type { PlanBuilder, Slot } from '../plan.js';
import { Tensor } from '../tensor.js';
import type { VitConfig } from './config.js';
import { UnsupportedError } from '../errors.js';

export interface AuxBranch {
  tau: number;
  l1: number;
}

export interface ForwardOptions {
  training: boolean;
  /** Castling models: the auxiliary masked softmax branch, or null when it is off (castled). */
  aux: AuxBranch | null;
  /** Training with drop-path: per block, the [batch] scale inputs of its two residual branches. */
  dropPath?: Array<[Slot, Slot]>;
}

/** What one block's backward reads. */
interface BlockRecord {
  x0: Slot;
  h1: Slot;
  mean1: Slot;
  rstd1: Slot;
  q: Slot;
  k: Slot;
  v: Slot;
  attnSaved: Slot[];
  a: Slot;
  x1: Slot;
  h2: Slot;
  mean2: Slot;
  rstd2: Slot;
  pre: Slot;
  m: Slot;
}

export interface ForwardRecord {
  logits: Slot;
  /** Per block with the aux branch on: sum of M * A (the L1 term before its weight). */
  auxL1: Slot[];
  blocks: BlockRecord[];
  xLast: Slot;
  meanF: Slot;
  rstdF: Slot;
  cls: Slot;
  images: Slot;
  patches: Slot;
}

type Param = (name: string) => Slot;

export class VitGraph {
  constructor(
    private readonly p: PlanBuilder,
    private readonly config: VitConfig,
    /** The slot of a parameter (a plan constant). */
    private readonly param: Param,
    private readonly has: (name: string) => boolean,
    /** The dconv weight viewed as the attention op wants it: (H, K) or (H, K, K). */
    private readonly dconv: (block: number) => Slot,
  ) {}

  private one(op: string, inputs: Array<Slot | null>, attrs = {}): Slot {
    return this.p.op(op, inputs, attrs, 1)[0]!;
  }

  private attentionAttrs(aux: AuxBranch | null) {
    return { form: this.config.convForm === 'tokens' ? 0 : 1, aux: aux !== null, tau: aux?.tau ?? 1, l1: aux?.l1 ?? 0 };
  }

  forward(images: Slot, o: ForwardOptions): ForwardRecord {
    const { p, config: cfg } = this;
    const w = this.param;
    p.op('checkFinite', [images], {}, 0);
    const patches = this.one('patchEmbed', [images, w('patch_embed.proj.weight'), w('patch_embed.proj.bias')]);
    let x = this.tokens(patches);
    const blocks: BlockRecord[] = [];
    const auxL1: Slot[] = [];
    const lnOutputs = o.training ? 3 : 1;
    for (let i = 0; i < cfg.depth; i++) {
      const b = `blocks.${i}`;
      const x0 = x;
      const [h1, mean1, rstd1] = p.op('layerNorm', [x0, w(`${b}.norm1.weight`), w(`${b}.norm1.bias`)], { eps: cfg.layerNormEps }, lnOutputs);
      const qkv = this.one('linear', [h1!, w(`${b}.attn.qkv.weight`), this.has(`${b}.attn.qkv.bias`) ? w(`${b}.attn.qkv.bias`) : null]);
      const [q, k, v] = p.op('splitHeads', [qkv], { heads: cfg.heads, parts: 3 }, 3) as [Slot, Slot, Slot];
      let attnOut: Slot[];
      // tokenOrder: the CPU ops write y in the layout mergeHeads returns, which then passes it on
      // without a copy (native/cpu/attention_common.h); other devices ignore it.
      if (cfg.attention === 'softmax') {
        attnOut = p.op('attentionSoftmax', [q, k, v], { tokenOrder: 1 }, o.training ? 2 : 1);
      } else if (cfg.attention === 'sparsifiner') {
        // The predictor picks the keys of each query (no gradient flows through the choice),
        // then attention runs over those keys only. Saved: y, lse, indices.
        const [indices] = p.op('sparsifinerPredict', [q, k, ...this.predictorParams(b)], this.selectionAttrs(), 1);
        attnOut = [...p.op('sparseAttention', [q, k, v, indices!], { tokenOrder: 1 }, o.training ? 2 : 1), indices!];
      } else {
        // Outputs: y, qnorm, knorm, S, znorm, and with the branch lse, auxOut, auxMass, l1.
        const outputs = o.training ? (o.aux ? 9 : 5) : 1;
        attnOut = p.op('attentionLinearAngular', [q, k, v, this.dconv(i)], { ...this.attentionAttrs(o.aux), tokenOrder: 1 }, outputs);
        if (o.training && o.aux) auxL1.push(attnOut[8]!);
      }
      const a = this.one('mergeHeads', [attnOut[0]!]);
      const scales = o.dropPath?.[i];
      const x1 = scales
        ? this.one('add', [x0, this.one('scaleBatch', [this.one('linear', [a, w(`${b}.attn.proj.weight`), w(`${b}.attn.proj.bias`)]), scales[0]])])
        : this.one('linear', [a, w(`${b}.attn.proj.weight`), w(`${b}.attn.proj.bias`), x0]);
      const [h2, mean2, rstd2] = p.op('layerNorm', [x1, w(`${b}.norm2.weight`), w(`${b}.norm2.bias`)], { eps: cfg.layerNormEps }, lnOutputs);
      let pre: Slot;
      let m: Slot;
      if (o.training) {
        pre = this.one('linear', [h2!, w(`${b}.mlp.fc1.weight`), w(`${b}.mlp.fc1.bias`)]);
        m = this.one('gelu', [pre]);
      } else {
        m = pre = this.one('linear', [h2!, w(`${b}.mlp.fc1.weight`), w(`${b}.mlp.fc1.bias`)], { gelu: true });
      }
      x = scales
        ? this.one('add', [x1, this.one('scaleBatch', [this.one('linear', [m, w(`${b}.mlp.fc2.weight`), w(`${b}.mlp.fc2.bias`)]), scales[1]])])
        : this.one('linear', [m, w(`${b}.mlp.fc2.weight`), w(`${b}.mlp.fc2.bias`), x1]);
      blocks.push({ x0, h1: h1!, mean1: mean1!, rstd1: rstd1!, q, k, v, attnSaved: attnOut, a, x1, h2: h2!, mean2: mean2!, rstd2: rstd2!, pre, m });
    }
    const [xf, meanF, rstdF] = p.op('layerNorm', [x, w('norm.weight'), w('norm.bias')], { eps: cfg.layerNormEps }, lnOutputs);
    let cls = this.one('selectToken', [xf!]);
    let logits = this.one('linear', [cls, w('head.weight'), w('head.bias')]);
    if (cfg.distillationHead) {
      // timm's distilled DeiT at inference: the two heads' logits averaged, and so the embeddings.
      const dist = this.one('selectToken', [xf!], { index: 1 });
      const distLogits = this.one('linear', [dist, w('head_dist.weight'), w('head_dist.bias')]);
      logits = this.one('scale', [this.one('add', [logits, distLogits])], { scale: 0.5 });
      cls = this.one('scale', [this.one('add', [cls, dist])], { scale: 0.5 });
    }
    return { logits, auxL1, blocks, xLast: x, meanF: meanF!, rstdF: rstdF!, cls, images, patches };
  }

  /**
   * The tokens the blocks take: the class token, the patches, and pos_embed added. A distillation
   * token goes between them in two assemblies: first in front of the patches (with nothing added),
   * then the class token in front of both, with pos_embed over all.
   */
  private tokens(patches: Slot): Slot {
    const w = this.param;
    if (!this.config.distillationToken) return this.one('assembleTokens', [patches, w('cls_token'), w('pos_embed')]);
    const patchCount = (this.config.imageSize / this.config.patchSize) ** 2;
    const nothing = this.p.constant(Tensor.zeros([1, patchCount + 1, this.config.width]), 'no position');
    const withDistillation = this.one('assembleTokens', [patches, w('dist_token'), nothing]);
    return this.one('assembleTokens', [withDistillation, w('cls_token'), w('pos_embed')]);
  }

  /** The predictor's parameters of a block, in the order the Sparsifiner ops take them (P twice when shared). */
  private predictorParams(block: string): Slot[] {
    const w = this.param;
    const basis = this.config.sharedBasis ? 'P' : 'B';
    return [`q.weight`, `q.bias`, `k.weight`, `k.bias`, `P`, basis].map((n) => w(`${block}.attn.predictor.${n}`));
  }

  /** sparsifinerPredict's attributes from the config's key selection. */
  private selectionAttrs(): Record<string, number> {
    const cfg = this.config;
    const attrs: Record<string, number> = { keepRate: cfg.keepRate, coefficientKeep: cfg.coefficientKeep };
    if (cfg.keySelection === 'threshold') Object.assign(attrs, { mode: 1, threshold: cfg.selectionThreshold });
    return attrs;
  }

  /**
   * Sparsifiner stage 1, attention reconstruction: the backbone runs with dense softmax attention
   * (frozen), and each block's predictor is scored by the squared error between its approximate
   * attention and the dense attention of the same block (class-token row excluded). Returns the
   * per-block losses and the predictor parameters' gradients.
   */
  reconstruction(images: Slot): { losses: Slot[]; grads: Map<string, Slot> } {
    const { p, config: cfg } = this;
    const w = this.param;
    const losses: Slot[] = [];
    const grads = new Map<string, Slot>();
    p.op('checkFinite', [images], {}, 0);
    let x = this.one('assembleTokens', [this.one('patchEmbed', [images, w('patch_embed.proj.weight'), w('patch_embed.proj.bias')]), w('cls_token'), w('pos_embed')]);
    for (let i = 0; i < cfg.depth; i++) {
      const b = `blocks.${i}`;
      const h = this.one('layerNorm', [x, w(`${b}.norm1.weight`), w(`${b}.norm1.bias`)], { eps: cfg.layerNormEps });
      const qkv = this.one('linear', [h, w(`${b}.attn.qkv.weight`), this.has(`${b}.attn.qkv.bias`) ? w(`${b}.attn.qkv.bias`) : null]);
      const [q, k, v] = p.op('splitHeads', [qkv], { heads: cfg.heads, parts: 3 }, 3) as [Slot, Slot, Slot];
      const [y, lse] = p.op('attentionSoftmax', [q, k, v], {}, 2) as [Slot, Slot];
      const [loss, ...g] = p.op('sparsifinerReconstruction', [q, k, ...this.predictorParams(b), lse], {}, 7);
      losses.push(loss!);
      ['q.weight', 'q.bias', 'k.weight', 'k.bias'].forEach((n, j) => grads.set(`${b}.attn.predictor.${n}`, g[j]!));
      // A shared basis gets both sides' gradients.
      if (cfg.sharedBasis) grads.set(`${b}.attn.predictor.P`, this.one('add', [g[4]!, g[5]!]));
      else ['P', 'B'].forEach((n, j) => grads.set(`${b}.attn.predictor.${n}`, g[4 + j]!));
      if (i === cfg.depth - 1) break; // the last block's output feeds no predictor
      x = this.one('linear', [this.one('mergeHeads', [y]), w(`${b}.attn.proj.weight`), w(`${b}.attn.proj.bias`), x]);
      const h2 = this.one('layerNorm', [x, w(`${b}.norm2.weight`), w(`${b}.norm2.bias`)], { eps: cfg.layerNormEps });
      const m = this.one('linear', [h2, w(`${b}.mlp.fc1.weight`), w(`${b}.mlp.fc1.bias`)], { gelu: true });
      x = this.one('linear', [m, w(`${b}.mlp.fc2.weight`), w(`${b}.mlp.fc2.bias`), x]);
    }
    return { losses, grads };
  }

  /** Records the backward pass from dlogits; returns the gradient slot of every parameter. */
  backward(f: ForwardRecord, dlogits: Slot, o: ForwardOptions): Map<string, Slot> {
    const { p, config: cfg } = this;
    if (cfg.distillationToken) throw new UnsupportedError('training a model with a distillation token (a distilled DeiT) is not supported: it runs inference only; to fine-tune, start from the non-distilled checkpoint');
    const w = this.param;
    const grads = new Map<string, Slot>();
    const linearBackward = (x: Slot, name: string, dy: Slot, inputGrad = true): Slot => {
      const bias = this.has(`${name}.bias`);
      const out = p.op('linearBackward', [x, w(`${name}.weight`), dy], { inputGrad, bias }, bias ? 3 : 2);
      grads.set(`${name}.weight`, out[1]!);
      if (bias) grads.set(`${name}.bias`, out[2]!);
      return out[0]!;
    };
    // `around`: the gradient reaching x by the residual path, which the op adds to its dx.
    const layerNormBackward = (x: Slot, name: string, mean: Slot, rstd: Slot, dy: Slot, around: Slot | null = null): Slot => {
      const [dx, dw, db] = p.op('layerNormBackward', [x, w(`${name}.weight`), mean, rstd, dy, around], {}, 3);
      grads.set(`${name}.weight`, dw!);
      grads.set(`${name}.bias`, db!);
      return dx!;
    };
    const dcls = linearBackward(f.cls, 'head', dlogits);
    const dxf = this.one('selectTokenBackward', [dcls], { tokens: (cfg.imageSize / cfg.patchSize) ** 2 + 1 });
    let dx = layerNormBackward(f.xLast, 'norm', f.meanF, f.rstdF, dxf);
    for (let i = cfg.depth - 1; i >= 0; i--) {
      const b = `blocks.${i}`;
      const r = f.blocks[i]!;
      const scales = o.dropPath?.[i];
      const dbranch2 = scales ? this.one('scaleBatch', [dx, scales[1]]) : dx;
      const dm = linearBackward(r.m, `${b}.mlp.fc2`, dbranch2);
      const dpre = this.one('geluBackward', [r.pre, dm]);
      const dh2 = linearBackward(r.h2, `${b}.mlp.fc1`, dpre);
      const dx1 = layerNormBackward(r.x1, `${b}.norm2`, r.mean2, r.rstd2, dh2, dx);
      const dbranch1 = scales ? this.one('scaleBatch', [dx1, scales[0]]) : dx1;
      const da = linearBackward(r.a, `${b}.attn.proj`, dbranch1);
      const dy = this.one('splitHeads', [da], { heads: cfg.heads });
      let dq: Slot, dk: Slot, dv: Slot;
      // tokenOrder: the CPU ops write dq, dk and dv into one buffer laid out as the qkv projection's
      // rows, which mergeHeads then passes on without a copy; other devices ignore it.
      if (cfg.attention === 'softmax') {
        const [y, lse] = r.attnSaved as [Slot, Slot];
        [dq, dk, dv] = p.op('attentionSoftmaxBackward', [r.q, r.k, r.v, y, lse, dy], { tokenOrder: 1 }, 3) as [Slot, Slot, Slot];
      } else if (cfg.attention === 'sparsifiner') {
        const [y, lse, indices] = r.attnSaved as [Slot, Slot, Slot];
        [dq, dk, dv] = p.op('sparseAttentionBackward', [r.q, r.k, r.v, indices, y, lse, dy], { tokenOrder: 1 }, 3) as [Slot, Slot, Slot];
      } else {
        const s = r.attnSaved;
        const auxSaved = o.aux ? [s[5]!, s[6]!, s[7]!] : [null, null, null];
        const out = p.op('attentionLinearAngularBackward', [r.q, r.k, r.v, this.dconv(i), s[1]!, s[2]!, s[3]!, s[4]!, ...auxSaved, dy], { ...this.attentionAttrs(o.aux), tokenOrder: 1 }, 4);
        [dq, dk, dv] = out as [Slot, Slot, Slot];
        grads.set(`${b}.attn.dconv.weight`, out[3]!);
      }
      const dqkv = this.one('mergeHeads', [dq, dk, dv]);
      const dh1 = linearBackward(r.h1, `${b}.attn.qkv`, dqkv);
      dx = layerNormBackward(r.x0, `${b}.norm1`, r.mean1, r.rstd1, dh1, dx1);
    }
    const [dpatches, dclsToken, dpos] = p.op('assembleTokensBackward', [dx], {}, 3);
    grads.set('cls_token', dclsToken!);
    grads.set('pos_embed', dpos!);
    const [dWpe, dbpe] = p.op('patchEmbedBackward', [f.images, w('patch_embed.proj.weight'), dpatches!], {}, 2);
    grads.set('patch_embed.proj.weight', dWpe!);
    grads.set('patch_embed.proj.bias', dbpe!);
    return grads;
  }
}

/** Views a dconv weight [H, 1, K, 1] / [H, 1, K, K] as the attention op's (H, K) / (H, K, K). */
export function dconvView(weight: Tensor, form: VitConfig['convForm']): Tensor {
  const [H, , K, K2] = weight.shape as [number, number, number, number];
  return form === 'tokens' ? weight.reshape([H, K]) : weight.reshape([H, K, K2]);
}
