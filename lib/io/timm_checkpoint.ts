// A timm ViT or DeiT checkpoint carries no castling-vit config, but its tensors say most of it:
// width (cls_token), patch size and input channels (patch_embed.proj.weight), image size
// (pos_embed's grid), depth (the blocks), MLP ratio (fc1), qkv bias and classes (head). The heads
// are not in any shape: timm's config.json beside the weights (the Hugging Face hub's layout) names
// the architecture, whose size gives them; without it, the width does for timm's sizes (tiny 192 to
// gigantic 1664), and another width is the caller's to give. That config.json also gives the preprocessing (pretrained_cfg) and the
// class names when it lists them. DeiT-III's LayerScale and patch-only pos_embed are folded into
// the plain ViT (foldTimmVariants); a distilled DeiT's dist_token and head_dist are its second
// prefix token and head; Castling-ViT's own checkpoints (timm's names plus attn.dconv) are castling
// models; tensors of architectures this model does not have (register tokens, pooled heads, class
// attention, ...) are refused by name instead of being left out.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import type { ImagePreprocessing } from '../nn/preprocessing.js';
import type { VitConfig } from '../nn/config.js';
import { BadFileError } from '../errors.js';

type StoredTensors = Map<string, { shape: number[]; data: Float32Array }>;

/** What timm's config.json beside a checkpoint says. */
export interface TimmSidecar {
  path: string;
  architecture: string;
  numClasses?: number;
  preprocessing: Partial<ImagePreprocessing>;
  labels?: string[];
}

/** Heads by the size in a timm ViT / DeiT architecture name (vit_small_patch16_224, deit_tiny_...). */
const HEADS_BY_SIZE: Record<string, number> = { tiny: 3, small: 6, medium: 8, base: 12, large: 16, huge: 16, giant: 16, gigantic: 16 };
/**
 * Heads by width of timm's ViT and DeiT sizes (tiny 192 to large 1024 in heads 64 wide; huge 1280,
 * giant 1408 and gigantic 1664 in 16 wider ones). Another width does not say: a guess could give
 * wrong logits without an error, so the caller (or config.json) must.
 */
const HEADS_BY_WIDTH: Record<number, number> = { 192: 3, 384: 6, 512: 8, 768: 12, 1024: 16, 1280: 16, 1408: 16, 1664: 16 };

/** Tensors of other ViT architectures: loading without them would give wrong logits, not an error. */
const OTHER_ARCHITECTURES: Array<[RegExp, string]> = [
  [/^blocks_token_only\.|^blocks\.\d+\.gamma_[12]$/, 'class-attention layers (blocks_token_only, as CaiT)'],
  [/^reg_token$/, 'register tokens (reg_token)'],
  [/^fc_norm\./, 'a pooled head (fc_norm: global average pooling instead of the class token)'],
  [/^norm_pre\./, 'a pre-norm before the blocks (norm_pre, as CLIP ViTs)'],
  [/^blocks\.\d+\.attn\.[qk]_norm\./, 'query/key normalisation (attn.q_norm, k_norm)'],
];

/** Throws when the tensors belong to a ViT variant with parts this model has not. */
export function refuseOtherArchitectures(tensors: StoredTensors, origin: string): void {
  for (const name of tensors.keys()) {
    for (const [pattern, what] of OTHER_ARCHITECTURES) {
      if (pattern.test(name)) throw new BadFileError(`${origin}: '${name}' belongs to a ViT with ${what}, which castling-vit's ViT does not have: loading without it would give wrong logits`);
    }
  }
}

/**
 * DeiT-III's two differences from the plain ViT, made into it in place, exactly in real arithmetic
 * (float32 rounding aside): LayerScale multiplies a block's residual branch per channel after its
 * last linear layer, which is that layer with each output row and bias entry multiplied by the
 * channel's gamma (ls1: attn.proj, ls2: mlp.fc2); a pos_embed over the patches alone
 * (no_embed_class) adds nothing to the class token: a zero row in front. Says what it did, or null.
 */
export function foldTimmVariants(tensors: StoredTensors, origin: string): string | null {
  const done: string[] = [];
  let gammas = 0;
  for (const [name, gamma] of [...tensors]) {
    const match = /^blocks\.(\d+)\.ls([12])\.gamma$/.exec(name);
    if (!match) continue;
    const layer = `blocks.${match[1]}.${match[2] === '1' ? 'attn.proj' : 'mlp.fc2'}`;
    const weight = tensors.get(`${layer}.weight`);
    const bias = tensors.get(`${layer}.bias`);
    const rows = gamma.shape[0]!;
    if (!weight || gamma.shape.length !== 1 || weight.shape.length !== 2 || weight.shape[0] !== rows || (bias && bias.shape.join() !== String(rows))) {
      throw new BadFileError(`${origin}: '${name}' [${gamma.shape.join(', ')}] does not scale the output of '${layer}' [${weight?.shape.join(', ') ?? 'missing'}]`);
    }
    const cols = weight.shape[1]!;
    const scaled = new Float32Array(weight.data.length);
    for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) scaled[r * cols + c] = weight.data[r * cols + c]! * gamma.data[r]!;
    tensors.set(`${layer}.weight`, { shape: weight.shape, data: scaled });
    if (bias) tensors.set(`${layer}.bias`, { shape: bias.shape, data: bias.data.map((b, r) => b * gamma.data[r]!) });
    tensors.delete(name);
    gammas++;
  }
  if (gammas) done.push(`LayerScale's ${gammas} gammas folded into attn.proj and mlp.fc2`);
  const pos = tensors.get('pos_embed');
  const length = pos?.shape[1] ?? 0;
  const square = (n: number) => n >= 1 && Math.round(Math.sqrt(n)) ** 2 === n;
  if (pos && pos.shape.length === 3 && tensors.has('cls_token') && !tensors.has('dist_token') && square(length) && !square(length - 1)) {
    const width = pos.shape[2]!;
    const withClass = new Float32Array((length + 1) * width);
    withClass.set(pos.data, width);
    tensors.set('pos_embed', { shape: [1, length + 1, width], data: withClass });
    done.push("pos_embed over the patches alone (no_embed_class): the class token's zero position put in front");
  }
  return done.length ? done.join('; ') : null;
}

/** timm's config.json in the checkpoint's folder, or null when there is none or it is not timm's. */
export async function readTimmSidecar(weightsPath: string): Promise<TimmSidecar | null> {
  const path = join(dirname(weightsPath), 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(await readFile(path, 'utf8'));
  } catch {
    return null; // none, unreadable or not JSON: not a timm config to go by
  }
  if (typeof json !== 'object' || json === null) return null;
  const { architecture, num_classes: numClasses, pretrained_cfg: cfg, label_names: topLabels } = json as Record<string, unknown>;
  if (typeof architecture !== 'string' || typeof cfg !== 'object' || cfg === null) return null;
  const pretrained = cfg as Record<string, unknown>;
  const preprocessing: Partial<ImagePreprocessing> = {};
  const triple = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'number');
  if (triple(pretrained.mean)) preprocessing.mean = pretrained.mean as number[];
  if (triple(pretrained.std)) preprocessing.std = pretrained.std as number[];
  if (typeof pretrained.crop_pct === 'number') preprocessing.cropFraction = pretrained.crop_pct;
  if (pretrained.interpolation === 'bicubic' || pretrained.interpolation === 'bilinear' || pretrained.interpolation === 'nearest') preprocessing.interpolation = pretrained.interpolation;
  const names = topLabels ?? pretrained.label_names;
  const labels = Array.isArray(names) && names.every((n) => typeof n === 'string') ? (names as string[]) : undefined;
  return { path, architecture, numClasses: typeof numClasses === 'number' ? numClasses : undefined, preprocessing, labels };
}

/**
 * Castling-ViT's release saves its model with timm's names plus each block's depthwise
 * convolution, a Conv2d weight [heads, 1, K, 1] along the tokens or [heads, 1, K, K] over the
 * patch grid: the heads, kernel and form of a castling model. Null without one; every block must
 * have the same.
 */
function castlingConvolutionOf(tensors: StoredTensors, origin: string, depth: number): { heads: number; kernel: number; form: 'tokens' | 'spatial' } | null {
  const first = tensors.get('blocks.0.attn.dconv.weight');
  if (!first) return null;
  const [heads, one, kernel, across] = first.shape;
  if (first.shape.length !== 4 || one !== 1 || !(kernel! % 2 === 1) || (across !== 1 && across !== kernel)) {
    throw new BadFileError(`${origin}: blocks.0.attn.dconv.weight [${first.shape.join(', ')}] is not a depthwise convolution of Castling-ViT ([heads, 1, K, 1] along the tokens or [heads, 1, K, K] over the patches, K odd)`);
  }
  for (let i = 1; i < depth; i++) {
    const other = tensors.get(`blocks.${i}.attn.dconv.weight`);
    if (other?.shape.join() !== first.shape.join()) {
      throw new BadFileError(`${origin}: blocks.${i}.attn.dconv.weight is [${other?.shape.join(', ') ?? 'missing'}], blocks.0's [${first.shape.join(', ')}]: every block of a castling model has the same convolution`);
    }
  }
  // A 1 x 1 kernel is the same in both forms; the tokens form is the default.
  return { heads: heads!, kernel: kernel!, form: across === kernel && kernel! > 1 ? 'spatial' : 'tokens' };
}

/** The heads a timm architecture name implies, or undefined for a name of another form. */
export function headsOfArchitecture(name: string): number | undefined {
  const size = /^(?:vit|deit)[a-z0-9]*_(tiny|small|medium|base|large|huge|giant|gigantic)_/.exec(name)?.[1];
  return size ? HEADS_BY_SIZE[size] : undefined;
}

/**
 * The config of a timm-layout ViT checkpoint from its tensors (and sidecar; other architectures
 * refused already by refuseOtherArchitectures), with a sentence saying
 * where it came from, and without heads (headsUnknown saying why) when nothing tells them; null when
 * the tensors are not a timm ViT's (no cls_token, pos_embed, ...).
 */
export function timmConfigOf(tensors: StoredTensors, origin: string, sidecar: TimmSidecar | null): { config: Partial<VitConfig>; source: string; headsUnknown?: string } | null {
  const cls = tensors.get('cls_token');
  const pos = tensors.get('pos_embed');
  const patch = tensors.get('patch_embed.proj.weight');
  const head = tensors.get('head.weight');
  if (!cls || !pos || !patch || !tensors.has('blocks.0.attn.qkv.weight')) return null;
  const bad = (what: string) => new BadFileError(`${origin}: a timm ViT's tensors, but ${what}: cannot tell its architecture`);
  const width = cls.shape[2]!;
  if (cls.shape.length !== 3 || patch.shape.length !== 4 || patch.shape[0] !== width || patch.shape[2] !== patch.shape[3]) throw bad(`cls_token [${cls.shape.join(', ')}] and patch_embed.proj.weight [${patch.shape.join(', ')}] do not fit`);
  if (!head) throw bad('it has no head.weight (a model without a classifier)');
  const patchSize = patch.shape[2]!;
  // A distilled DeiT: a second prefix token (dist_token, with its place in pos_embed), and a second head.
  const distilled = tensors.has('dist_token');
  const prefix = distilled ? 2 : 1;
  const grid = Math.round(Math.sqrt((pos.shape[1] ?? 0) - prefix));
  if (pos.shape.length !== 3 || pos.shape[1] !== prefix + grid * grid || pos.shape[2] !== width) {
    throw bad(`pos_embed [${pos.shape.join(', ')}] is not the class token${distilled ? ', the distillation token' : ''} and a square grid of patches`);
  }
  let depth = 0;
  while (tensors.has(`blocks.${depth}.attn.qkv.weight`)) depth++;
  const fc1 = tensors.get('blocks.0.mlp.fc1.weight');
  if (!fc1) throw bad('blocks.0.mlp.fc1.weight is missing');
  const castling = castlingConvolutionOf(tensors, origin, depth);
  const named = sidecar ? headsOfArchitecture(sidecar.architecture) : undefined;
  const heads = castling?.heads ?? named ?? HEADS_BY_WIDTH[width];
  const headsUnknown =
    heads === undefined
      ? `${origin}: a timm ViT checkpoint whose heads are in no tensor's shape: its width ${width} is none of timm's ViT and DeiT sizes (${Object.keys(HEADS_BY_WIDTH).join(', ')}) and no timm config.json beside it names the architecture; pass { config: { heads } } to load() (the CLI: --preset)`
      : undefined;
  const config: Partial<VitConfig> = {
    imageSize: grid * patchSize,
    patchSize,
    inChannels: patch.shape[1]!,
    numClasses: head.shape[0]!,
    width,
    depth,
    ...(heads === undefined ? {} : { heads }),
    mlpRatio: fc1.shape[0]! / width,
    qkvBias: tensors.has('blocks.0.attn.qkv.bias'),
    distillationToken: distilled,
    distillationHead: tensors.has('head_dist.weight'),
    attention: 'softmax',
    ...(castling ? { attention: 'castling', convKernel: castling.kernel, convForm: castling.form } : {}),
  };
  const headsFrom = castling
    ? `castling attention, its heads and ${castling.form} convolution of ${castling.kernel} from blocks.0.attn.dconv.weight`
    : named !== undefined ? `heads from ${sidecar!.path}'s architecture ${sidecar!.architecture}` : heads !== undefined ? `${heads} heads, as timm's ${width}-wide ViTs and DeiTs` : 'all but the heads';
  return { config, source: `the tensors' shapes (${headsFrom})`, headsUnknown };
}
