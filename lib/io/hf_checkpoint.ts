// Hugging Face transformers' image classifiers of the ViT family: ViTForImageClassification
// (vit.*), DeiTForImageClassification and DeiTForImageClassificationWithTeacher (deit.*, with a
// distillation token; the teacher variant with a second head). Their tensors are timm's under other
// names, with the query, key and value projections apart: renamed here to timm's (the three stacked
// into qkv, rows q, k, v as timm splits them), so that the rest of loading is a timm checkpoint's.
// Their config.json gives the heads, LayerNorm's epsilon (1e-12 in transformers, 1e-6 in timm) and
// the labels (id2label); preprocessor_config.json beside it the image preprocessing.
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

import type { ImagePreprocessing } from '../nn/preprocessing.js';
import type { VitConfig } from '../nn/config.js';
import { BadFileError } from '../errors.js';

type StoredTensors = Map<string, { shape: number[]; data: Float32Array }>;

/** transformers' LayerNorm epsilon when its config.json does not say (ViTConfig's and DeiTConfig's default). */
const TRANSFORMERS_LAYER_NORM_EPS = 1e-12;

/** What transformers' config.json (and preprocessor_config.json) beside a checkpoint say. */
export interface HfSidecar {
  path: string;
  config: Partial<VitConfig>;
  labels?: string[];
  preprocessing: Partial<ImagePreprocessing>;
  /** preprocessor_config.json, when it was there. */
  preprocessingPath?: string;
}

/** Tensor renames from transformers' names (after the vit. / deit. prefix) to timm's. */
const RENAMES: Array<[RegExp, string]> = [
  [/^embeddings\.cls_token$/, 'cls_token'],
  [/^embeddings\.distillation_token$/, 'dist_token'],
  [/^embeddings\.position_embeddings$/, 'pos_embed'],
  [/^embeddings\.patch_embeddings\.projection\.(weight|bias)$/, 'patch_embed.proj.$1'],
  [/^encoder\.layer\.(\d+)\.layernorm_before\.(weight|bias)$/, 'blocks.$1.norm1.$2'],
  [/^encoder\.layer\.(\d+)\.layernorm_after\.(weight|bias)$/, 'blocks.$1.norm2.$2'],
  [/^encoder\.layer\.(\d+)\.attention\.output\.dense\.(weight|bias)$/, 'blocks.$1.attn.proj.$2'],
  [/^encoder\.layer\.(\d+)\.intermediate\.dense\.(weight|bias)$/, 'blocks.$1.mlp.fc1.$2'],
  [/^encoder\.layer\.(\d+)\.output\.dense\.(weight|bias)$/, 'blocks.$1.mlp.fc2.$2'],
  [/^layernorm\.(weight|bias)$/, 'norm.$1'],
];

/** The heads: ViT's and DeiT's classifier, the teacher variant's two. */
const HEAD_RENAMES: Array<[RegExp, string]> = [
  [/^classifier\.(weight|bias)$/, 'head.$1'],
  [/^cls_classifier\.(weight|bias)$/, 'head.$1'],
  [/^distillation_classifier\.(weight|bias)$/, 'head_dist.$1'],
];

/** Tensors the classifier never reads: masked image modelling's mask token, the unused pooler. */
const UNUSED = /^(?:embeddings\.mask_token|pooler\.dense\.(?:weight|bias))$/;

/** 'vit' or 'deit' when the tensors are transformers' layout of that model, else null. */
export function hfFamily(tensors: ReadonlyMap<string, unknown>): 'vit' | 'deit' | null {
  if (tensors.has('vit.embeddings.cls_token')) return 'vit';
  if (tensors.has('deit.embeddings.cls_token')) return 'deit';
  return null;
}

/**
 * Renames transformers' tensors to timm's in place and says what it did; names it does not know
 * are left as they are (and refused as another architecture's by the loader).
 */
export function renameHfTensors(tensors: StoredTensors, family: 'vit' | 'deit', origin: string): string {
  const prefix = `${family}.`;
  const renamed: StoredTensors = new Map();
  const projections = new Map<string, Partial<Record<'query' | 'key' | 'value', { shape: number[]; data: Float32Array }>>>();
  const dropped: string[] = [];
  for (const [name, tensor] of tensors) {
    const inner = name.startsWith(prefix) ? name.slice(prefix.length) : null;
    const qkv = inner === null ? null : /^encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)\.(weight|bias)$/.exec(inner);
    if (qkv) {
      const key = `blocks.${qkv[1]}.attn.qkv.${qkv[3]}`;
      const parts = projections.get(key) ?? {};
      parts[qkv[2] as 'query' | 'key' | 'value'] = tensor;
      projections.set(key, parts);
      continue;
    }
    if (inner !== null && UNUSED.test(inner)) {
      dropped.push(name);
      continue;
    }
    const rules = inner === null ? HEAD_RENAMES : RENAMES;
    const rule = rules.find(([pattern]) => pattern.test(inner ?? name));
    renamed.set(rule ? (inner ?? name).replace(rule[0], rule[1]) : name, tensor);
  }
  for (const [key, parts] of projections) {
    const { query, key: keys, value } = parts;
    if (!query || !keys || !value) {
      const missing = (['query', 'key', 'value'] as const).filter((p) => !parts[p]);
      throw new BadFileError(`${origin}: transformers' ${key.replace(/^blocks\.(\d+)\.attn\.qkv\./, 'encoder.layer.$1.attention.attention.*.')} lacks ${missing.join(' and ')}`);
    }
    if (query.shape.join() !== keys.shape.join() || query.shape.join() !== value.shape.join()) {
      throw new BadFileError(`${origin}: the query, key and value of ${key} differ in shape ([${query.shape.join(', ')}], [${keys.shape.join(', ')}], [${value.shape.join(', ')}])`);
    }
    const data = new Float32Array(query.data.length * 3);
    data.set(query.data, 0);
    data.set(keys.data, query.data.length);
    data.set(value.data, 2 * query.data.length);
    renamed.set(key, { shape: [3 * query.shape[0]!, ...query.shape.slice(1)], data });
  }
  tensors.clear();
  for (const [name, tensor] of renamed) tensors.set(name, tensor);
  const model = family === 'vit' ? 'ViTForImageClassification' : tensors.has('head_dist.weight') ? 'DeiTForImageClassificationWithTeacher' : 'DeiTForImageClassification';
  return `transformers' ${model} layout, renamed to timm's${dropped.length ? ` (unused by the classifier, left out: ${dropped.join(', ')})` : ''}`;
}

/** The part of the config that no tensor says, when there is no config.json: transformers' epsilon. */
export const HF_DEFAULTS: Partial<VitConfig> = { layerNormEps: TRANSFORMERS_LAYER_NORM_EPS };

const RESAMPLING: Record<number, ImagePreprocessing['interpolation']> = { 0: 'nearest', 2: 'bilinear', 3: 'bicubic' };

async function readJson(path: string): Promise<Record<string, unknown> | null> {
  try {
    const json: unknown = JSON.parse(await readFile(path, 'utf8'));
    return typeof json === 'object' && json !== null && !Array.isArray(json) ? (json as Record<string, unknown>) : null;
  } catch {
    return null; // none, unreadable or not JSON
  }
}

/** An image size of transformers' processor config: a number, { height, width } or { shortest_edge }. */
function sideOf(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  const side = v.shortest_edge ?? v.height;
  return typeof side === 'number' ? side : undefined;
}

/** transformers' config.json beside the checkpoint (model_type vit or deit), with preprocessor_config.json; null without it. */
export async function readHfSidecar(weightsPath: string): Promise<HfSidecar | null> {
  const path = join(dirname(weightsPath), 'config.json');
  const json = await readJson(path);
  if (!json || (json.model_type !== 'vit' && json.model_type !== 'deit')) return null;
  const number = (key: string) => (typeof json[key] === 'number' ? (json[key] as number) : undefined);
  if (json.hidden_act !== undefined && json.hidden_act !== 'gelu') {
    throw new BadFileError(`${path}: hidden_act is ${JSON.stringify(json.hidden_act)}; castling-vit's MLP has the exact (erf) GELU, transformers' 'gelu'`);
  }
  const config: Partial<VitConfig> = { layerNormEps: number('layer_norm_eps') ?? TRANSFORMERS_LAYER_NORM_EPS };
  const heads = number('num_attention_heads');
  if (heads !== undefined) config.heads = heads;
  const labelsById = json.id2label;
  let labels: string[] | undefined;
  if (typeof labelsById === 'object' && labelsById !== null) {
    const entries = Object.entries(labelsById as Record<string, unknown>);
    const list = entries.map((_, i) => (labelsById as Record<string, unknown>)[String(i)]);
    if (list.every((l) => typeof l === 'string')) labels = list as string[];
  }
  const preprocessing: Partial<ImagePreprocessing> = {};
  const processorPath = join(dirname(weightsPath), 'preprocessor_config.json');
  const processor = await readJson(processorPath);
  if (processor) {
    const triple = (v: unknown) => Array.isArray(v) && v.every((x) => typeof x === 'number');
    if (triple(processor.image_mean)) preprocessing.mean = processor.image_mean as number[];
    if (triple(processor.image_std)) preprocessing.std = processor.image_std as number[];
    const resample = typeof processor.resample === 'number' ? RESAMPLING[processor.resample] : undefined;
    if (resample) preprocessing.interpolation = resample;
    // Resized, then centre-cropped when do_center_crop; resized to the size itself otherwise.
    const size = sideOf(processor.size);
    const crop = processor.do_center_crop === true ? sideOf(processor.crop_size) : undefined;
    if (size !== undefined) preprocessing.cropFraction = crop !== undefined && crop <= size ? crop / size : 1;
  }
  return { path, config, labels, preprocessing, ...(processor ? { preprocessingPath: processorPath } : {}) };
}
