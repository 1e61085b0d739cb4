// Checks of what a model's calls are given: images and labels against its config, and how a
// plan's complaint about its input is reported as the caller's images.
import { Tensor } from '../tensor.js';
import { notATensor } from '../tensor_argument.js';
import type { VitConfig } from './config.js';
import { InvalidArgTypeError, InvalidArgValueError } from '../errors.js';

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

/** A plan's error, with a non-finite input reported as the caller's images. */
export function imagesError(what: string, error: unknown): unknown {
  const message = error instanceof Error ? error.message : String(error);
  return message.startsWith('checkFinite:') ? new InvalidArgValueError(`${what}: images must be finite: ${message.slice('checkFinite: '.length)}`) : error;
}
