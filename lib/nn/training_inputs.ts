// Checks and per-step inputs of a model's calls: images, labels, the optimizer's parameters, and
// the drop-path scales.
import type { AdamW } from '../train/adamw.js';
import { Tensor } from '../tensor.js';
import { notATensor } from '../tensor_argument.js';
import type { VitConfig } from './config.js';
import { SeededRandom } from './random.js';
import { DisposedError, InvalidArgTypeError, InvalidArgValueError } from '../errors.js';

/** The batch size of images [batch, inChannels, imageSize, imageSize], after checking their shape. */
export function imageBatch(config: Pick<VitConfig, 'inChannels' | 'imageSize'>, images: Tensor, what: string): number {
  const { inChannels: c, imageSize: s } = config;
  if (!(images instanceof Tensor)) throw new InvalidArgTypeError(`${what}: images must be a Tensor [batch, ${c}, ${s}, ${s}], ${notATensor(images, `[batch, ${c}, ${s}, ${s}]`)}`);
  const shape = images.shape; // (a disposed tensor says so here)
  if (shape.length !== 4 || shape[1] !== c || shape[2] !== s || shape[3] !== s || shape[0]! < 1) {
    throw new InvalidArgValueError(`${what}: images have shape [${shape.join(', ')}], expected [batch, ${c}, ${s}, ${s}] with batch >= 1`);
  }
  return shape[0]!;
}

/** Labels as a [batch] tensor of class indices, validated against the config. */
export function checkLabels(config: VitConfig, labels: Tensor | ArrayLike<number>, batch: number): Tensor {
  if (!(labels instanceof Tensor) && !ArrayBuffer.isView(labels)) {
    if (!Array.isArray(labels)) throw new InvalidArgTypeError(`trainStep: labels are ${labels === null ? 'null' : typeof labels}, expected an array of class indices (or an Int32Array, or a Tensor [batch])`);
    // Float32Array.from would turn '3' into 3 and true into 1: a caller's bug, not a label.
    const odd = labels.findIndex((v) => typeof v !== 'number');
    if (odd >= 0) throw new InvalidArgTypeError(`trainStep: labels[${odd}] is ${JSON.stringify(labels[odd])} (${typeof labels[odd]}), expected an integer class from 0 to ${config.numClasses - 1}`);
  }
  const values = labels instanceof Tensor ? labels.toFloat32Array() : Float32Array.from(labels as ArrayLike<number>);
  if (values.length !== batch || (labels instanceof Tensor && labels.rank !== 1)) {
    throw new InvalidArgValueError(`trainStep: got ${values.length} labels${labels instanceof Tensor ? ` of shape [${labels.shape.join(', ')}]` : ''}, expected one per image: [${batch}]`);
  }
  values.forEach((v, i) => {
    if (!Number.isInteger(v) || v < 0 || v >= config.numClasses) {
      throw new InvalidArgValueError(`trainStep: labels[${i}] is ${v}, expected an integer class from 0 to ${config.numClasses - 1}`);
    }
  });
  return labels instanceof Tensor ? labels : Tensor.fromArray(values, [batch]);
}

/** Throws unless the optimizer was made from exactly these parameter tensors. */
export function checkOptimizer(params: Map<string, Tensor>, optimizer: AdamW): void {
  if (typeof optimizer !== 'object' || optimizer === null || !(optimizer.params instanceof Map)) {
    throw new InvalidArgTypeError(`trainStep: the optimizer is ${optimizer === null ? 'null' : typeof optimizer}, expected new AdamW(model.parameters(), { lr })`);
  }
  if (optimizer.disposed) throw new DisposedError('trainStep: the optimizer has been disposed: make a new AdamW(model.parameters(), ...)');
  for (const [name, t] of params) {
    if (optimizer.params.get(name) !== t) throw new InvalidArgValueError(`trainStep: the optimizer was not made from this model's parameters (missing '${name}'): use new AdamW(model.parameters(), ...)`);
  }
}

/** Drop-path scales for a step: per block and branch, [batch] values 0 or 1/(1-p); null when off. */
export function dropPathScales(config: VitConfig, batch: number, step: number): Tensor[] | null {
  const { dropPathRate: rate, depth, seed } = config;
  if (rate <= 0) return null;
  const rng = new SeededRandom((seed * 1_000_003 + step * 7919 + 1) >>> 0);
  const scales: Tensor[] = [];
  for (let i = 0; i < depth; i++) {
    // Linearly increasing drop probability over depth, as in DeiT.
    const p = depth > 1 ? (rate * i) / (depth - 1) : rate;
    for (let branch = 0; branch < 2; branch++) {
      scales.push(Tensor.fromArray(Float32Array.from({ length: batch }, () => (rng.next() < p ? 0 : 1 / (1 - p))), [batch]));
    }
  }
  return scales;
}
