// NaN or infinite outputs of a model (weights that overflow float32 for some image, say) are
// otherwise passed on as numbers: predict and embed can refuse them with an error naming the first
// one, and classify does by default (NaN probabilities rank nothing).
import { firstNonFinite, nonFiniteName } from '../finite.js';
import type { Tensor } from '../tensor.js';
import type { AbortOptions } from './abort.js';
import { InvalidArgTypeError, NonFiniteOutputError } from '../errors.js';

/** 'allow': outputs as they come; 'refuse': an error when any output is NaN or infinite. */
export type NonFinitePolicy = 'allow' | 'refuse';

export interface InferenceOptions extends AbortOptions {
  /** What to do with NaN or infinite outputs (default 'allow' for predict and embed). */
  nonFinite?: NonFinitePolicy;
}

export function checkNonFinitePolicy(value: unknown, what: string): asserts value is NonFinitePolicy {
  if (value !== 'allow' && value !== 'refuse') throw new InvalidArgTypeError(`${what}: nonFinite is ${JSON.stringify(value)}, expected 'allow' or 'refuse'`);
}

/** Throws (disposing `out`) when `out` [batch, n] holds a NaN or an infinity, naming the image and the position. */
export function checkOutputsFinite(out: Tensor, what: string, output: 'logits' | 'embeddings'): void {
  const values = out.toFloat32Array();
  const bad = firstNonFinite(values);
  if (bad < 0) return;
  const [, columns = 1] = out.shape;
  const value = values[bad]!;
  out.dispose();
  const where = output === 'logits' ? `class ${bad % columns}` : `element ${bad % columns}`;
  throw new NonFiniteOutputError(`${what}: the model produced a non-finite value (${nonFiniteName(value)}) for image ${Math.floor(bad / columns)}, ${where} of its ${output}: its weights overflow float32 on this input, or are not finite`);
}
