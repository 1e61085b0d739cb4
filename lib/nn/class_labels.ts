import { InvalidArgTypeError } from '../errors.js';
// A model's class labels: one name per class, saved with the model and given by classify.

/** Validates class labels: one string per class. */
export function checkClassLabels(labels: unknown, numClasses: number, what = 'labels'): string[] {
  if (!Array.isArray(labels) || labels.length !== numClasses || !labels.every((l) => typeof l === 'string')) {
    const got = Array.isArray(labels) ? `${labels.length} entries` : JSON.stringify(labels);
    throw new InvalidArgTypeError(`${what}: expected an array of ${numClasses} strings (one per class), got ${got}`);
  }
  return [...(labels as string[])];
}
