// Images to class probabilities: the model's preprocessing, predict a chunk at a time, then each
// image's most probable classes.
import { readImagesNumbered, type ImagePreprocessing, type ImageSource } from './images.js';
import type { Tensor } from '../tensor.js';
import { InvalidArgTypeError, InvalidArgValueError } from '../errors.js';
import { abortReason } from '../nn/abort.js';

export interface ClassScore {
  /** Class index (the logit's position). */
  index: number;
  /** The model's label for the class, or the index as text when it has none. */
  label: string;
  /** Softmax probability of the class. */
  probability: number;
}

export interface ClassifyOptions {
  /** Classes reported per image, most probable first (default 5, at most numClasses). */
  top?: number;
  /** Images decoded and run per predict (default 16): bounds the memory of a long list. */
  batchSize?: number;
  /** Aborting it rejects the call at once; no chunk starts after that (abort.ts). */
  signal?: AbortSignal;
  /** 'refuse' (the default): NaN or infinite logits are an error, not NaN probabilities; 'allow' passes them on. */
  nonFinite?: 'allow' | 'refuse';
}

/** What classify needs of a model. */
export interface Classifier {
  readonly config: { imageSize: number; inChannels: number; numClasses: number };
  readonly preprocessing: ImagePreprocessing;
  readonly labels: readonly string[] | null;
  predict(images: Tensor): Promise<Tensor>;
}

function positiveIntegerOption(value: number | undefined, fallback: number, name: string): number {
  const v = value ?? fallback;
  if (!(Number.isInteger(v) && v >= 1)) throw new InvalidArgValueError(`classify: ${name} is ${JSON.stringify(value)}, expected a positive integer`);
  return v;
}

/** The `top` most probable classes of each row of logits [rows, classes] (softmax in float64). */
export function topClasses(logits: Float32Array, classes: number, top: number, labels: readonly string[] | null): ClassScore[][] {
  const rows = logits.length / classes;
  const result: ClassScore[][] = [];
  for (let r = 0; r < rows; r++) {
    const row = logits.subarray(r * classes, (r + 1) * classes);
    const max = row.reduce((a, b) => Math.max(a, b), -Infinity);
    const exps = Array.from(row, (v) => Math.exp(v - max));
    const total = exps.reduce((a, b) => a + b, 0);
    // Ties go to the lower index, so the order never depends on the sort's stability.
    const order = exps.map((_, i) => i).sort((a, b) => exps[b]! - exps[a]! || a - b);
    result.push(order.slice(0, top).map((index) => ({ index, label: labels?.[index] ?? String(index), probability: exps[index]! / total })));
  }
  return result;
}

export async function classifyImages(model: Classifier, sources: readonly ImageSource[], options: ClassifyOptions = {}): Promise<ClassScore[][]> {
  if (!Array.isArray(sources) || sources.length === 0) throw new InvalidArgTypeError('classify: expected a non-empty array of image paths, encoded bytes or raw pixels');
  const { imageSize, inChannels, numClasses } = model.config;
  const top = Math.min(positiveIntegerOption(options.top, 5, 'top'), numClasses);
  const batchSize = positiveIntegerOption(options.batchSize, 16, 'batchSize');
  const result: ClassScore[][] = [];
  // One chunk after the other: decoding the next chunk while this one ran measured 2-8% slower on
  // 2 cores (bench images), the decoders and the native pool competing for the same CPUs.
  for (let start = 0; start < sources.length; start += batchSize) {
    if (options.signal?.aborted) throw abortReason(options.signal);
    const chunk = sources.slice(start, start + batchSize);
    const images = await readImagesNumbered(chunk, { size: imageSize, channels: inChannels, preprocessing: model.preprocessing }, start);
    try {
      const logits = await model.predict(images);
      result.push(...topClasses(logits.toFloat32Array(), numClasses, top, model.labels));
      logits.dispose();
    } finally {
      images.dispose();
    }
  }
  return result;
}
