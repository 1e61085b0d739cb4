// What a model file keeps beside the weights, as safetensors metadata (strings only): the config,
// whether the model is castled, its image preprocessing and class labels. Parsed with errors that
// name the file; validated against the config by the model.
import type { ImagePreprocessing } from '../nn/preprocessing.js';
import type { VitConfig } from '../nn/config.js';
import { BadFileError, InvalidArgTypeError } from '../errors.js';

const METADATA_FORMAT = 'castling-vit';

export interface StoredSettings {
  /** Absent in files from elsewhere (a timm checkpoint). */
  config?: Partial<VitConfig>;
  castled: boolean;
  /** Absent in files written before preprocessing was stored. */
  preprocessing?: Partial<ImagePreprocessing>;
  labels?: unknown;
}

export function parseMetadata(metadata: Record<string, string>, path: string): StoredSettings {
  const parse = (key: string): unknown => {
    if (metadata[key] === undefined) return undefined;
    try {
      return JSON.parse(metadata[key]);
    } catch {
      throw new BadFileError(`${path}: the ${key} in the file's metadata is not valid JSON`);
    }
  };
  const object = (key: string, expected: string): object | undefined => {
    const value = parse(key);
    if (value !== undefined && (typeof value !== 'object' || value === null || Array.isArray(value))) {
      throw new InvalidArgTypeError(`${path}: the ${key} in the file's metadata is ${JSON.stringify(value)}, expected an object ${expected}`);
    }
    return value as object | undefined;
  };
  // Where a model runs is chosen when it is loaded (load()'s config.device, default the CPU), not
  // by the machine it was saved on: a model trained on a GPU loads anywhere. So are the weights'
  // storage (the file's tensors say how they were saved; load() converts) and CUDA graphs.
  const { device: _savedOn, storage: _savedAs, cudaGraph: _graphed, ...config } = (object('config', 'of ViT options') ?? {}) as Partial<VitConfig>;
  return {
    config: metadata.config === undefined ? undefined : config,
    castled: metadata.castled === 'true',
    preprocessing: object('preprocessing', '{ mean, std, cropFraction, interpolation }'),
    labels: parse('labels'),
  };
}

export function metadataOf(s: { config: VitConfig; castled: boolean; preprocessing: Readonly<ImagePreprocessing>; labels: readonly string[] | null }): Record<string, string> {
  const metadata: Record<string, string> = {
    format: METADATA_FORMAT,
    config: JSON.stringify({ ...s.config, device: undefined, storage: undefined, cudaGraph: undefined }), // (see parseMetadata)
    castled: String(s.castled),
    preprocessing: JSON.stringify(s.preprocessing),
  };
  if (s.labels) metadata.labels = JSON.stringify(s.labels);
  return metadata;
}
