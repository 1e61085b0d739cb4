// A float64 Vision Transformer forward pass built from the float64 op references, to check the
// native model end to end (docs/algorithms.md section 5, timm's layout).
import type { VitConfig } from '../lib/index.js';
import * as att from './attention_reference.js';
import * as ref from './reference.js';

type Params = Map<string, ArrayLike<number>>;

function get(params: Params, name: string): ArrayLike<number> {
  const v = params.get(name);
  if (!v) throw new Error(`reference: missing ${name}`);
  return v;
}

/** x [rows, in] W^T + b, W [out, in]. */
function linear(x: ArrayLike<number>, w: ArrayLike<number>, b: ArrayLike<number> | undefined, rows: number, inF: number, out: number): Float64Array {
  const y = ref.matmul(x, w, rows, out, inF, { transB: true });
  if (b) for (let i = 0; i < y.length; i++) y[i]! += b[i % out]!;
  return y;
}

/** The auxiliary branch of castling models during training. */
export interface ReferenceAux {
  tau: number;
  l1: number;
}

/** Logits [batch, classes] in float64. images: [batch, channels, size, size]. */
export function referenceForward(config: VitConfig, params: Params, images: Float32Array, batch: number, aux?: ReferenceAux): Float64Array {
  return referenceForwardWithAux(config, params, images, batch, aux).logits;
}

/** Mean cross-entropy of the reference logits plus lambda * sum(M * A) when the branch is on. */
export function referenceLoss(config: VitConfig, params: Params, images: Float32Array, labels: number[], aux?: ReferenceAux): number {
  const { logits, l1 } = referenceForwardWithAux(config, params, images, labels.length, aux);
  const K = config.numClasses;
  let total = 0;
  labels.forEach((y, b) => {
    const z = Array.from(logits.subarray(b * K, (b + 1) * K));
    const max = Math.max(...z);
    total += max + Math.log(z.reduce((a, v) => a + Math.exp(v - max), 0)) - z[y]!;
  });
  return total / labels.length + (aux?.l1 ?? 0) * l1;
}

/**
 * The smallest distance between tau and any probability of the auxiliary softmax in the model:
 * where it is tiny, float rounding (or a finite-difference step) decides the mask.
 */
export function thresholdMargin(config: VitConfig, params: Params, images: Float32Array, batch: number, tau: number): number {
  let margin = Infinity;
  referenceForwardWithAux(config, params, images, batch, { tau, l1: 0 }, (p) => {
    for (const a of p) margin = Math.min(margin, Math.abs(a - tau));
  });
  return margin;
}

/** Logits and the summed L1 term of the auxiliary branch. */
export function referenceForwardWithAux(
  config: VitConfig,
  params: Params,
  images: Float32Array,
  batch: number,
  aux?: ReferenceAux,
  onProbabilities?: (p: Float64Array) => void,
): { logits: Float64Array; l1: number } {
  let l1Sum = 0;
  const { width: C, heads: H, patchSize: p, imageSize: S, inChannels: IC } = config;
  const d = C / H;
  const grid = S / p;
  const P = grid * grid;
  const N = P + 1;
  const hidden = Math.round(C * config.mlpRatio);
  const logits = new Float64Array(batch * config.numClasses);
  for (let b = 0; b < batch; b++) {
    // Patch embedding as an explicit convolution.
    const pw = get(params, 'patch_embed.proj.weight');
    const pb = get(params, 'patch_embed.proj.bias');
    const cls = get(params, 'cls_token');
    const pos = get(params, 'pos_embed');
    let x = new Float64Array(N * C);
    for (let c = 0; c < C; c++) x[c] = cls[c]! + pos[c]!;
    for (let q = 0; q < P; q++) {
      for (let o = 0; o < C; o++) {
        let acc = pb[o]!;
        for (let ch = 0; ch < IC; ch++)
          for (let yy = 0; yy < p; yy++)
            for (let xx = 0; xx < p; xx++)
              acc += pw[((o * IC + ch) * p + yy) * p + xx]! * images[((b * IC + ch) * S + Math.floor(q / grid) * p + yy) * S + (q % grid) * p + xx]!;
        x[(q + 1) * C + o] = acc + pos[(q + 1) * C + o]!;
      }
    }
    for (let i = 0; i < config.depth; i++) {
      const blk = `blocks.${i}`;
      const h = ref.layerNormRows(x, get(params, `${blk}.norm1.weight`), get(params, `${blk}.norm1.bias`), N, C, 1e-6).y;
      const qkv = linear(h, get(params, `${blk}.attn.qkv.weight`), params.get(`${blk}.attn.qkv.bias`), N, C, 3 * C);
      const merged = new Float64Array(N * C);
      for (let head = 0; head < H; head++) {
        const part = (which: number) => {
          const out = new Float64Array(N * d);
          for (let n = 0; n < N; n++) for (let j = 0; j < d; j++) out[n * d + j] = qkv[n * 3 * C + which * C + head * d + j]!;
          return out;
        };
        const [q, k, v] = [part(0), part(1), part(2)];
        let y: Float64Array;
        if (config.attention === 'softmax') {
          y = att.softmaxAttention(q, k, v, N, d).y;
        } else {
          const w = Array.from(get(params, `${blk}.attn.dconv.weight`));
          const taps = config.convForm === 'tokens' ? config.convKernel : config.convKernel ** 2;
          const r = att.linearAngular(q, k, v, w.slice(head * taps, (head + 1) * taps), N, d, {
            form: config.convForm,
            kernel: config.convKernel,
            aux: aux ? { tau: aux.tau, l1: aux.l1 } : undefined,
          });
          y = r.y;
          l1Sum += r.l1;
          if (onProbabilities) onProbabilities(att.attentionProbabilities(q, k, N, d, 1 / Math.sqrt(d)));
        }
        for (let n = 0; n < N; n++) for (let j = 0; j < d; j++) merged[n * C + head * d + j] = y[n * d + j]!;
      }
      const proj = linear(merged, get(params, `${blk}.attn.proj.weight`), get(params, `${blk}.attn.proj.bias`), N, C, C);
      x = x.map((v, idx) => v + proj[idx]!);
      const h2 = ref.layerNormRows(x, get(params, `${blk}.norm2.weight`), get(params, `${blk}.norm2.bias`), N, C, 1e-6).y;
      const m = linear(h2, get(params, `${blk}.mlp.fc1.weight`), get(params, `${blk}.mlp.fc1.bias`), N, C, hidden).map(ref.gelu);
      const out = linear(m, get(params, `${blk}.mlp.fc2.weight`), get(params, `${blk}.mlp.fc2.bias`), N, hidden, C);
      x = x.map((v, idx) => v + out[idx]!);
    }
    const normed = ref.layerNormRows(x.subarray(0, C), get(params, 'norm.weight'), get(params, 'norm.bias'), 1, C, 1e-6).y;
    const l = linear(normed, get(params, 'head.weight'), get(params, 'head.bias'), 1, C, config.numClasses);
    logits.set(l, b * config.numClasses);
  }
  return { logits, l1: l1Sum };
}
