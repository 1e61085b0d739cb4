// The parameters of a ViT: timm's names and shapes (weights (out, in), as PyTorch stores them)
// and their initialisation, so that weights move to and from PyTorch unchanged.
import { SeededRandom } from './random.js';
import { tokenCount, type VitConfig } from './config.js';

export type Init = 'zeros' | 'ones' | { truncNormal: number } | { normal: number } | { uniform: number };

export interface ParameterSpec {
  name: string;
  shape: number[];
  init: Init;
  /** Excluded from weight decay (norms, biases, tokens, position embedding). */
  noDecay: boolean;
}

/** Shape of the depthwise convolution's weight, as the released PyTorch code's Conv2d stores it. */
export function dconvShape(config: VitConfig): number[] {
  const K = config.convKernel;
  return config.convForm === 'tokens' ? [config.heads, 1, K, 1] : [config.heads, 1, K, K];
}

export function parameterSpecs(config: VitConfig): ParameterSpec[] {
  const C = config.width;
  const hidden = Math.round(C * config.mlpRatio);
  const p = config.patchSize;
  const specs: ParameterSpec[] = [];
  const add = (name: string, shape: number[], init: Init, noDecay = false) => specs.push({ name, shape, init, noDecay });
  const linear = (name: string, out: number, inF: number, bias = true) => {
    add(`${name}.weight`, [out, inF], { truncNormal: 0.02 });
    if (bias) add(`${name}.bias`, [out], 'zeros', true);
  };
  const norm = (name: string) => {
    add(`${name}.weight`, [C], 'ones', true);
    add(`${name}.bias`, [C], 'zeros', true);
  };
  add('patch_embed.proj.weight', [C, config.inChannels, p, p], { truncNormal: 0.02 });
  add('patch_embed.proj.bias', [C], 'zeros', true);
  add('cls_token', [1, 1, C], { normal: 1e-6 }, true);
  if (config.distillationToken) add('dist_token', [1, 1, C], { normal: 1e-6 }, true);
  add('pos_embed', [1, tokenCount(config), C], { truncNormal: 0.02 }, true);
  for (let i = 0; i < config.depth; i++) {
    const b = `blocks.${i}`;
    norm(`${b}.norm1`);
    linear(`${b}.attn.qkv`, 3 * C, C, config.qkvBias);
    if (config.attention === 'castling') {
      const taps = dconvShape(config).slice(2).reduce((a, d) => a * d, 1);
      // PyTorch's default Conv2d initialisation: uniform with bound 1/sqrt(fan_in).
      add(`${b}.attn.dconv.weight`, dconvShape(config), { uniform: 1 / Math.sqrt(taps) });
    }
    if (config.attention === 'sparsifiner') {
      // The connectivity predictor (docs/algorithms.md section 4), shared by the heads of a block:
      // q' = q Wqᵀ + bq and k' = k Wkᵀ + bk (d -> d/2), and the token bases P, B (N x r; P
      // alone when shared).
      const d = C / config.heads;
      const N = tokenCount(config);
      const r = Math.max(1, Math.floor(N / 8));
      linear(`${b}.attn.predictor.q`, d / 2, d);
      linear(`${b}.attn.predictor.k`, d / 2, d);
      add(`${b}.attn.predictor.P`, [N, r], { truncNormal: 0.02 });
      if (!config.sharedBasis) add(`${b}.attn.predictor.B`, [N, r], { truncNormal: 0.02 });
    }
    linear(`${b}.attn.proj`, C, C);
    norm(`${b}.norm2`);
    linear(`${b}.mlp.fc1`, hidden, C);
    linear(`${b}.mlp.fc2`, C, hidden);
  }
  norm('norm');
  linear('head', config.numClasses, C);
  if (config.distillationHead) linear('head_dist', config.numClasses, C);
  return specs;
}

/** Initial values for a parameter, drawn from `rng` in a fixed order. */
export function initialValues(spec: ParameterSpec, rng: SeededRandom): Float32Array {
  const n = spec.shape.reduce((a, d) => a * d, 1);
  const out = new Float32Array(n);
  const init = spec.init;
  if (init === 'ones') out.fill(1);
  else if (init === 'zeros') return out;
  else if ('truncNormal' in init) for (let i = 0; i < n; i++) out[i] = rng.truncatedNormal(init.truncNormal);
  else if ('normal' in init) for (let i = 0; i < n; i++) out[i] = rng.normal() * init.normal;
  else for (let i = 0; i < n; i++) out[i] = (rng.next() * 2 - 1) * init.uniform;
  return out;
}

/**
 * Parameters and float32 bytes of a model of `config`, from the shapes alone (nothing allocated,
 * and no spec listed per block: a config of a million blocks is counted as fast as one of two).
 */
export function parameterTotals(config: VitConfig): { values: number; tensors: number } {
  const oneBlock = parameterSpecs({ ...config, depth: 1 });
  let values = 0;
  let tensors = 0;
  for (const spec of oneBlock) {
    const times = spec.name.startsWith('blocks.0.') ? config.depth : 1;
    values += times * spec.shape.reduce((a, d) => a * d, 1);
    tensors += times;
  }
  return { values, tensors };
}
