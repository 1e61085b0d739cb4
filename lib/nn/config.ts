// Vision Transformer configuration: the presets of timm/DeiT (and a small one for 28 x 28
// digits), defaults, and validation with errors that name the offending field.

import { InvalidArgTypeError, InvalidArgValueError, LimitExceededError, UnsupportedError } from '../errors.js';

export type AttentionKind = 'softmax' | 'castling' | 'sparsifiner';
export type ConvForm = 'tokens' | 'spatial';
export type KeySelection = 'topk' | 'threshold';
export type CastlingForm = 'training' | 'inference';
/** How the linear layers' weights are stored: the element types of the native ops (DType). */
export type WeightStorage = 'float32' | 'bfloat16' | 'float16';

export interface VitConfig {
  /** Square input images of imageSize x imageSize pixels. */
  imageSize: number;
  patchSize: number;
  inChannels: number;
  numClasses: number;
  /** Embedding width C. */
  width: number;
  depth: number;
  heads: number;
  /** MLP hidden width = mlpRatio * width. */
  mlpRatio: number;
  qkvBias: boolean;
  /** The epsilon of every LayerNorm: 1e-6 in timm's ViTs, 1e-12 in Hugging Face transformers'. */
  layerNormEps: number;
  /**
   * A distillation token after the class token (DeiT's distilled models: two prefix tokens, both
   * with a place in pos_embed). Softmax attention only, and inference only.
   */
  distillationToken: boolean;
  /**
   * A second head (head_dist) on the distillation token, its logits averaged with the class
   * token's at inference as timm does; without it the class token's head alone gives the logits
   * (Hugging Face's DeiTForImageClassification).
   */
  distillationHead: boolean;
  attention: AttentionKind;
  /** Castling-ViT's depthwise convolution of v: kernel size (odd) and form. */
  convKernel: number;
  convForm: ConvForm;
  /**
   * Castling models: 'training' runs the auxiliary masked softmax branch beside the
   * linear-angular attention (threshold 0.02 until a castling schedule moves it), as the paper
   * trains, in predict too: other logits than the inference form's, at a cost quadratic in the
   * tokens. 'inference' is the linear-angular attention alone (castle() switches to it for good).
   * Ignored by other attention kinds.
   */
  castlingForm: CastlingForm;
  /** Sparsifiner: the fraction of keys each query keeps (top-k of the predicted attention). */
  keepRate: number;
  /**
   * Sparsifiner: how each query's keys are chosen from the predicted attention: its top-k
   * (`keepRate`), or every key above `selectionThreshold` (at least the best one).
   */
  keySelection: KeySelection;
  selectionThreshold: number;
  /**
   * Sparsifiner: keep only the largest `coefficientKeep` basis coefficients of each query (the
   * release's top-k on the coefficients C) before the approximate attention, which then costs
   * 2 N² coefficientKeep FLOPs instead of 2 N² r; 0 keeps all r = floor(N / 8).
   */
  coefficientKeep: number;
  /** Sparsifiner: one token basis for both sides (P = B, the release's share_inout_proj). */
  sharedBasis: boolean;
  /** Stochastic depth: the last block's drop probability (linearly increasing from 0). */
  dropPathRate: number;
  /** Seed of the weight initialisation and of drop-path. */
  seed: number;
  /** Where the weights live and the passes run: 'cpu', or 'cuda' (needs a CUDA build and a GPU). */
  device: 'cpu' | 'cuda';
  /**
   * The element type of the linear layers' weights: 'float32', or 'bfloat16' / 'float16' to keep
   * them in 16 bits on device 'cuda' (half the memory; GEMMs over 16-bit inputs accumulating in
   * float32; weight_storage.ts). Inference only. Like the device, the loader's choice: a file
   * keeps the weights in the form the model held them, and load() converts.
   */
  storage: WeightStorage;
  /**
   * Device 'cuda': run predict and embed as a CUDA graph per batch size, captured on the first
   * pass and replayed after (one launch instead of one per kernel). Off by default: whether it
   * pays is unmeasured (docs/cuda.md). Like the device, not saved with the model.
   */
  cudaGraph: boolean;
}

const base: Omit<VitConfig, 'width' | 'heads'> = {
  imageSize: 224,
  patchSize: 16,
  inChannels: 3,
  numClasses: 1000,
  depth: 12,
  mlpRatio: 4,
  qkvBias: true,
  layerNormEps: 1e-6,
  distillationToken: false,
  distillationHead: false,
  attention: 'softmax',
  convKernel: 9,
  convForm: 'tokens',
  castlingForm: 'training',
  keepRate: 0.25,
  keySelection: 'topk',
  selectionThreshold: 0,
  coefficientKeep: 0,
  sharedBasis: false,
  dropPathRate: 0,
  seed: 0,
  device: 'cpu',
  storage: 'float32',
  cudaGraph: false,
};

export const presets = {
  deitTiny: { ...base, width: 192, heads: 3 } as VitConfig,
  deitSmall: { ...base, width: 384, heads: 6 } as VitConfig,
  deitBase: { ...base, width: 768, heads: 12 } as VitConfig,
  /**
   * 28 x 28 grey digits, 7 x 7 patches (17 tokens), sized for `castling-vit train mnist` to train
   * in a few minutes on 2 CPU threads: 4 x 4 patches (50 tokens) cost 2.5x per image and learned
   * more slowly per epoch, so the budget goes to width instead (96 wide, heads of 32).
   */
  digits: { ...base, imageSize: 28, patchSize: 7, inChannels: 1, numClasses: 10, width: 96, depth: 4, heads: 3, mlpRatio: 2 } as VitConfig,
} satisfies Record<string, VitConfig>;

export type PresetName = keyof typeof presets;

function positiveInteger(config: Record<string, unknown>, field: string, max = 1 << 20): void {
  const v = config[field];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > max) {
    throw new InvalidArgValueError(`config.${field} is ${JSON.stringify(v)}: expected an integer from 1 to ${max}`);
  }
}

/** Fills defaults (DeiT-S) under `partial` and validates the result. */
export function resolveConfig(partial: Partial<VitConfig>): VitConfig {
  if (typeof partial !== 'object' || partial === null) throw new InvalidArgTypeError('config must be an object');
  const known = new Set(Object.keys(presets.deitSmall));
  for (const key of Object.keys(partial)) if (!known.has(key)) throw new InvalidArgTypeError(`config.${key} is not a ViT option (expected one of ${[...known].join(', ')})`);
  const config = { ...presets.deitSmall, ...partial } as VitConfig;
  const c = config as unknown as Record<string, unknown>;
  for (const f of ['imageSize', 'patchSize', 'inChannels', 'numClasses', 'width', 'depth', 'heads', 'convKernel']) positiveInteger(c, f);
  if (!(typeof config.mlpRatio === 'number' && config.mlpRatio > 0 && Number.isInteger(config.mlpRatio * config.width))) {
    throw new InvalidArgValueError(`config.mlpRatio is ${config.mlpRatio}: expected a positive number giving an integer hidden width`);
  }
  if (config.imageSize % config.patchSize) throw new InvalidArgValueError(`config.imageSize ${config.imageSize} is not divisible by config.patchSize ${config.patchSize}`);
  if (config.width % config.heads) throw new InvalidArgValueError(`config.width ${config.width} is not divisible by config.heads ${config.heads}`);
  if (!['softmax', 'castling', 'sparsifiner'].includes(config.attention)) {
    throw new InvalidArgTypeError(`config.attention is '${String(config.attention)}', expected 'softmax', 'castling' or 'sparsifiner'`);
  }
  if (!(config.keepRate > 0 && config.keepRate <= 1)) throw new InvalidArgValueError(`config.keepRate is ${config.keepRate}: expected a number in (0, 1]`);
  if (config.keySelection !== 'topk' && config.keySelection !== 'threshold') {
    throw new InvalidArgTypeError(`config.keySelection is '${String(config.keySelection)}', expected 'topk' or 'threshold'`);
  }
  if (typeof config.selectionThreshold !== 'number' || !Number.isFinite(config.selectionThreshold)) {
    throw new InvalidArgValueError(`config.selectionThreshold is ${JSON.stringify(config.selectionThreshold)}: expected a finite number`);
  }
  const basis = Math.max(1, Math.floor(tokenCount(config) / 8));
  if (!Number.isInteger(config.coefficientKeep) || config.coefficientKeep < 0 || config.coefficientKeep > basis) {
    throw new InvalidArgValueError(`config.coefficientKeep is ${JSON.stringify(config.coefficientKeep)}: expected an integer from 0 (all) to r = floor(N / 8) = ${basis}`);
  }
  if (typeof config.sharedBasis !== 'boolean') throw new InvalidArgTypeError('config.sharedBasis must be a boolean');
  if (config.attention === 'sparsifiner' && (config.width / config.heads) % 2) {
    throw new InvalidArgValueError(`config: sparsifiner needs an even head width (its predictor halves it), got ${config.width / config.heads}`);
  }
  if (config.convForm !== 'tokens' && config.convForm !== 'spatial') throw new InvalidArgTypeError(`config.convForm is '${String(config.convForm)}', expected 'tokens' or 'spatial'`);
  if (config.castlingForm !== 'training' && config.castlingForm !== 'inference') {
    throw new InvalidArgTypeError(`config.castlingForm is '${String(config.castlingForm)}', expected 'training' (the auxiliary branch on) or 'inference' (castled)`);
  }
  if (config.convKernel % 2 === 0) throw new InvalidArgValueError(`config.convKernel is ${config.convKernel}: expected an odd kernel size`);
  if (typeof config.qkvBias !== 'boolean') throw new InvalidArgTypeError('config.qkvBias must be a boolean');
  if (!(typeof config.layerNormEps === 'number' && config.layerNormEps > 0 && config.layerNormEps < 1)) throw new InvalidArgValueError(`config.layerNormEps is ${JSON.stringify(config.layerNormEps)}: expected a number in (0, 1)`);
  checkDistillation(config);
  if (!(config.dropPathRate >= 0 && config.dropPathRate < 1)) throw new InvalidArgValueError(`config.dropPathRate is ${config.dropPathRate}: expected a number in [0, 1)`);
  if (!Number.isSafeInteger(config.seed)) throw new InvalidArgValueError(`config.seed is ${config.seed}: expected an integer`);
  if (config.device !== 'cpu' && config.device !== 'cuda') throw new InvalidArgTypeError(`config.device is '${String(config.device)}', expected 'cpu' or 'cuda'`);
  checkStorage(config);
  checkParameterSizes(config);
  return config;
}

/**
 * A distillation token is a second prefix token: the softmax attention treats it as any token,
 * but Sparsifiner's predictor and the spatial convolution are laid out for the class token alone,
 * and castling models are made to be trained, which a distilled model cannot be here.
 */
function checkDistillation(config: VitConfig): void {
  if (typeof config.distillationToken !== 'boolean' || typeof config.distillationHead !== 'boolean') throw new InvalidArgTypeError('config.distillationToken and config.distillationHead must be booleans');
  if (config.distillationHead && !config.distillationToken) throw new InvalidArgValueError('config.distillationHead needs config.distillationToken: the second head classifies the distillation token');
  if (config.distillationToken && config.attention !== 'softmax') {
    throw new InvalidArgValueError(
      `config: a distillation token (a distilled DeiT) with ${config.attention} attention is not supported: ` +
        (config.attention === 'sparsifiner'
          ? "Sparsifiner's predictor keeps the class token's row dense and no other prefix token's"
          : 'castling models are trained (the auxiliary branch, then the switch), and models with a distillation token run inference only') +
        '; load it as softmax, or start from the non-distilled checkpoint',
    );
  }
}

/** 16-bit storage and CUDA graphs are a CUDA model's: the CPU's linear op takes float32 weights only. */
function checkStorage(config: VitConfig): void {
  const storages: readonly unknown[] = ['float32', 'bfloat16', 'float16'] satisfies WeightStorage[];
  if (!storages.includes(config.storage)) {
    throw new InvalidArgTypeError(`config.storage is ${JSON.stringify(config.storage)}, expected 'float32', 'bfloat16' or 'float16'`);
  }
  if (typeof config.cudaGraph !== 'boolean') throw new InvalidArgTypeError(`config.cudaGraph is ${JSON.stringify(config.cudaGraph)}, expected true or false`);
  if (config.cudaGraph && config.device !== 'cuda') throw new InvalidArgValueError(`config.cudaGraph is true on device '${config.device}': CUDA graphs run on device 'cuda' only`);
  if (config.storage !== 'float32' && config.device !== 'cuda') {
    throw new UnsupportedError(`config.storage is '${config.storage}' on device '${config.device}': 16-bit weights run on device 'cuda' only (the CPU's linear layers take float32); set config.device to 'cuda', or storage to 'float32'`);
  }
}

/** The most values one parameter may hold: what a Float32Array can on every supported Node. */
export const MAX_PARAMETER_VALUES = 2 ** 31 - 1;

/**
 * The token-sized parameters (pos_embed, N x width; Sparsifiner's bases, N x N / 8) must fit one
 * tensor: a huge image size is an error here that says so, not a failed allocation later.
 */
function checkParameterSizes(config: VitConfig): void {
  const tokens = tokenCount(config);
  const sized: Array<[string, number, number]> = [['pos_embed', tokens, config.width]];
  if (config.attention === 'sparsifiner') sized.push(['the predictor bases P and B', tokens, Math.max(1, Math.floor(tokens / 8))]);
  for (const [name, rows, cols] of sized) {
    if (rows * cols > MAX_PARAMETER_VALUES) {
      throw new LimitExceededError(
        `config: imageSize ${config.imageSize} with patchSize ${config.patchSize} makes ${tokens} tokens: ${name} would hold ${rows} x ${cols} = ${rows * cols} values, ` +
          `more than one tensor can (${MAX_PARAMETER_VALUES})`,
      );
    }
  }
}

/** Prefix tokens before the patches: the class token, and the distillation token when there is one. */
export function prefixTokens(config: Pick<VitConfig, 'distillationToken'>): number {
  return config.distillationToken ? 2 : 1;
}

/** Tokens per image: patches plus the prefix tokens. */
export function tokenCount(config: VitConfig): number {
  return (config.imageSize / config.patchSize) ** 2 + prefixTokens(config);
}
