// The digits main job's recipe: the augmentation each training image goes through (shifts whole
// or sub-pixel, rotation and size, random erasing), its option errors, and short trainDigits
// runs: one learns and depends on its seed alone, one feeds the steps the batches drawn in
// sequence, one ends with the moving average of the weights, switched.
import { describe, expect, it } from 'vitest';

import { DIGIT_SIZE, loadDigits } from '../lib/entry/digits.js';
import { SeededRandom } from '../lib/nn/random.js';
import { augmentDigit, checkDigitAugmentation, normaliseDigitPixel, type DigitAugmentation } from '../lib/train/digit_augment.js';
import { DIGITS_AUGMENTATION, trainDigits } from '../lib/train/digits.js';
import { VisionTransformer, type Tensor } from '../lib/index.js';
import { presets } from '../lib/nn/config.js';
import { random } from './helpers.js';

const n = DIGIT_SIZE;
const none: DigitAugmentation = { shift: 0, subpixel: false, rotate: 0, scale: 0, erase: 0, elastic: 0 };
const { train } = loadDigits();
const background = Math.fround(normaliseDigitPixel(0)); // as the images store it

/** Image `index` through `aug` with a fresh generator of `seed`. */
function augmented(index: number, aug: DigitAugmentation, seed: number): Float32Array {
  const out = new Float32Array(n * n);
  augmentDigit(train, index, aug, new SeededRandom(seed), out, 0);
  return out;
}

/** Image `index` moved by whole pixels (dx, dy), normalised, background outside: the reference. */
function movedReference(index: number, dx: number, dy: number): Float32Array {
  const out = new Float32Array(n * n).fill(background);
  for (let y = 0; y < n; y++) {
    for (let x = 0; x < n; x++) {
      const sx = x - dx;
      const sy = y - dy;
      if (sx >= 0 && sx < n && sy >= 0 && sy < n) out[y * n + x] = normaliseDigitPixel(train.images[index * n * n + sy * n + sx]!);
    }
  }
  return out;
}

/** The whole-pixel move (dx, dy) that reproduces `image`, or null if none within `limit` does. */
function findMove(index: number, image: Float32Array, limit: number): [number, number] | null {
  for (let dy = -limit; dy <= limit; dy++) {
    for (let dx = -limit; dx <= limit; dx++) {
      const reference = movedReference(index, dx, dy);
      if (reference.every((v, i) => Math.abs(v - image[i]!) < 1e-5)) return [dx, dy];
    }
  }
  return null;
}

describe('augmentDigit', () => {
  it('without augmentation writes the normalised image', () => {
    const index = Math.floor(random() * train.count);
    expect(Array.from(augmented(index, none, 1))).toEqual(Array.from(movedReference(index, 0, 0)));
  });

  it('whole-pixel shifts move the digit by at most the limit, and reach every offset', () => {
    const seen = new Set<string>();
    for (let draw = 0; draw < 150; draw++) {
      const index = Math.floor(random() * train.count);
      const move = findMove(index, augmented(index, { ...none, shift: 2 }, draw + 1), 2);
      expect(move).not.toBeNull();
      seen.add(String(move));
    }
    expect(seen.size).toBe(25);
  });

  it('sub-pixel shifts keep the ink (inside the frame) and are not whole-pixel moves', () => {
    let fractional = 0;
    const clearOfBorder = (index: number) => {
      for (let y = 0; y < n; y++) {
        for (let x = 0; x < n; x++) if (Math.min(x, y, n - 1 - x, n - 1 - y) < 2 && train.images[index * n * n + y * n + x]! > 0) return false;
      }
      return true;
    };
    for (let draw = 0; draw < 40; draw++) {
      let index = Math.floor(random() * train.count);
      while (!clearOfBorder(index)) index = Math.floor(random() * train.count);
      const image = augmented(index, { ...none, shift: 1.5, subpixel: true }, draw + 1);
      const ink = (pixels: Float32Array) => pixels.reduce((a, v) => a + (v - background), 0);
      // Bilinear sampling of a shift conserves the sum while the digit stays clear of the border.
      expect(ink(image) / ink(movedReference(index, 0, 0))).toBeCloseTo(1, 4);
      if (findMove(index, image, 2) === null) fractional++;
    }
    expect(fractional).toBeGreaterThan(30);
  });

  it('rotation and size changes are drawn within their limits (the ink grows with the area)', () => {
    const index = Math.floor(random() * train.count);
    const ink = (pixels: Float32Array) => pixels.reduce((a, v) => a + (v - background), 0);
    const plain = ink(movedReference(index, 0, 0));
    for (let draw = 0; draw < 40; draw++) {
      const ratio = ink(augmented(index, { ...none, rotate: 15, scale: 0.2 }, draw + 1)) / plain;
      expect(ratio).toBeGreaterThan(0.8 ** 2 * 0.95);
      expect(ratio).toBeLessThan(1.2 ** 2 * 1.05);
    }
  });

  it('elastic bending moves ink by at most its limit, and differently for each image', () => {
    const limit = 1.5;
    const reach = Math.ceil(limit) + 1; // the displacement, then the bilinear neighbour
    for (let draw = 0; draw < 20; draw++) {
      const index = Math.floor(random() * train.count);
      const image = augmented(index, { ...none, elastic: limit }, draw + 1);
      const source = train.images.subarray(index * n * n, (index + 1) * n * n);
      const inkNear = (x: number, y: number) => {
        for (let sy = Math.max(0, y - reach); sy <= Math.min(n - 1, y + reach); sy++) {
          for (let sx = Math.max(0, x - reach); sx <= Math.min(n - 1, x + reach); sx++) if (source[sy * n + sx]! > 0) return true;
        }
        return false;
      };
      for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) if (image[y * n + x]! > background + 1e-4) expect(inkNear(x, y), `pixel ${x},${y}`).toBe(true);
      expect(image).not.toEqual(movedReference(index, 0, 0));
      expect(image).not.toEqual(augmented(index, { ...none, elastic: limit }, draw + 101));
    }
  });

  it('erasing blanks one rectangle of 1/16 to 1/4 of the image, with the chance asked for', () => {
    let erasedCount = 0;
    const draws = 400;
    for (let draw = 0; draw < draws; draw++) {
      const index = Math.floor(random() * train.count);
      const image = augmented(index, { ...none, erase: 0.3 }, draw + 1);
      const plain = movedReference(index, 0, 0);
      const changed: number[] = [];
      image.forEach((v, i) => {
        if (v !== plain[i]) changed.push(i);
      });
      if (changed.length === 0) continue; // not erased, or erased where there was no ink
      erasedCount++;
      expect(changed.every((i) => image[i] === background)).toBe(true);
      const rows = changed.map((i) => Math.floor(i / n));
      const cols = changed.map((i) => i % n);
      const area = (Math.max(...rows) - Math.min(...rows) + 1) * (Math.max(...cols) - Math.min(...cols) + 1);
      expect(area).toBeLessThanOrEqual((n * n) / 4 + 2 * n);
    }
    // Some erased rectangles fall on background only and change nothing: the count is a floor.
    expect(erasedCount / draws).toBeGreaterThan(0.15);
    expect(erasedCount / draws).toBeLessThan(0.36);
  });

  it('the same seed draws the same images', () => {
    const aug = { shift: 2, subpixel: true, rotate: 10, scale: 0.1, erase: 0.5, elastic: 1.5 };
    const index = Math.floor(random() * train.count);
    expect(augmented(index, aug, 9)).toEqual(augmented(index, aug, 9));
    expect(augmented(index, aug, 9)).not.toEqual(augmented(index, aug, 10));
  });

  it('refuses values out of range, naming the field and the range', () => {
    expect(() => checkDigitAugmentation({ ...none, erase: 1.5 })).toThrow(/trainDigits: erase is 1.5, expected a number from 0 to 1 \(a probability\)/);
    expect(() => checkDigitAugmentation({ ...none, shift: -1 })).toThrow(/trainDigits: shift is -1, expected a number from 0 to 28/);
    expect(() => checkDigitAugmentation({ ...none, rotate: Number.NaN })).toThrow(/trainDigits: rotate is null, expected a number from 0 to 180/);
    expect(() => checkDigitAugmentation({ ...none, subpixel: 1 as unknown as boolean })).toThrow(/trainDigits: subpixel is 1, expected true or false/);
  });
});

describe('trainDigits', () => {
  it('learns in a short run with the default recipe', async () => {
    // 128 steps, the first 64 of them the warm-up: far from trained, but far above chance (0.1).
    const result = await trainDigits({ epochs: 2, limit: 1024, batchSize: 16, seed: 2 });
    expect(result.epochs).toHaveLength(2);
    expect(result.epochs[1]!.loss).toBeLessThan(result.epochs[0]!.loss);
    expect(result.testAccuracy).toBeGreaterThan(0.2);
  }, 120_000);

  it('the same seed trains the same model', async () => {
    const quick = { epochs: 1, limit: 128, batchSize: 16, seed: 3 };
    const first = await trainDigits(quick);
    const again = await trainDigits(quick);
    expect(again.epochs.map((e) => e.loss)).toEqual(first.epochs.map((e) => e.loss));
    expect(again.testAccuracy).toBe(first.testAccuracy);
  }, 120_000);

  it('feeds each step the batch drawn in sequence (drawn while the step before runs), smoothed by 0.05', async () => {
    const seed = 1 + Math.floor(random() * 100);
    const batchSize = 8;
    const model = VisionTransformer.create({ ...presets.digits, attention: 'castling', seed });
    const fed: Float32Array[] = [];
    const fedLabels: number[][] = [];
    const step = model.trainStep.bind(model);
    const smoothing = new Set<number | undefined>();
    model.trainStep = (images, labels, optimizer, options) => {
      fed.push(images.toFloat32Array());
      fedLabels.push(Array.from((labels as Tensor).toFloat32Array()));
      smoothing.add(options?.labelSmoothing);
      return step(images, labels, optimizer, options);
    };
    await trainDigits({ model, seed, epochs: 2, limit: 24, batchSize, weightAverage: 0 });
    // The reference: the run's generator shuffles every epoch, then draws each image of each step.
    const rng = new SeededRandom(seed * 7 + 1);
    const order = Array.from({ length: train.count }, (_, i) => i);
    const expected: Float32Array[] = [];
    const expectedLabels: number[][] = [];
    for (let epoch = 0; epoch < 2; epoch++) {
      rng.shuffle(order);
      for (let s = 0; s < 3; s++) {
        const images = new Float32Array(batchSize * n * n);
        for (let b = 0; b < batchSize; b++) augmentDigit(train, order[s * batchSize + b]!, DIGITS_AUGMENTATION, rng, images, b * n * n);
        expected.push(images);
        expectedLabels.push(order.slice(s * batchSize, (s + 1) * batchSize).map((i) => train.labels[i]!));
      }
    }
    expect(fed).toEqual(expected);
    expect(fedLabels).toEqual(expectedLabels);
    // The recipe's label smoothing, 0.05 (98.5% and more held out on seeds 1 to 3; 0.1 fell short).
    expect([...smoothing]).toEqual([0.05]);
  }, 120_000);

  it('ends with the moving average of the weights, and switches it', async () => {
    const decay = 0.9;
    const model = VisionTransformer.create({ ...presets.digits, attention: 'castling', seed: 4 });
    const weights = [...model.parameters().values()];
    let reference = weights.map((t) => Array.from(t.toFloat32Array()));
    let steps = 0;
    const onStep = () => {
      steps += 1;
      const d = Math.min(decay, (1 + steps) / (10 + steps));
      reference = reference.map((e, p) => {
        const w = weights[p]!.toFloat32Array();
        return e.map((v, i) => d * v + (1 - d) * w[i]!);
      });
    };
    const result = await trainDigits({ model, seed: 4, epochs: 2, limit: 128, batchSize: 16, weightAverage: decay, onStep });
    expect(result.model.castled).toBe(true);
    weights.forEach((t, p) => {
      const got = t.toFloat32Array();
      reference[p]!.forEach((v, i) => expect(got[i]).toBeCloseTo(v, 5));
    });
    expect(result.lastStepAccuracy).toBe(result.epochs[1]!.testAccuracy);
  }, 120_000);
});
