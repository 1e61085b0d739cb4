// The moving average of the weights that trainDigits ends with: against a float64 reference on
// random weights, what it writes back, and its decay's errors.
import { describe, expect, it } from 'vitest';

import { Tensor } from '../lib/index.js';
import { WeightAverage, checkAverageDecay } from '../lib/train/weight_average.js';
import { random, randomArray } from './helpers.js';

/** Parameters of awkward sizes, random values. */
function randomParameters(): Map<string, Tensor> {
  const shapes = [[7], [3, 5], [1 + Math.floor(random() * 40), 9]];
  return new Map(shapes.map((shape, i) => [`p${i}`, Tensor.fromArray(randomArray(shape.reduce((a, d) => a * d, 1)), shape)]));
}

describe('WeightAverage', () => {
  it('follows e = d e + (1 - d) w from the starting weights, d warming up to decay, and writes e back', () => {
    const params = randomParameters();
    const decay = 0.3 + random() * 0.25; // reached by the 10th update: both the warm-up and the decay run
    const average = new WeightAverage(params, decay);
    const reference = new Map([...params].map(([name, t]) => [name, Array.from(t.toFloat32Array())]));
    for (let step = 1; step <= 12; step++) {
      const d = Math.min(decay, (1 + step) / (10 + step));
      // A step of training writes the weights in place.
      for (const [name, t] of params) {
        t.set(randomArray(t.size, 2));
        const w = t.toFloat32Array();
        reference.set(name, reference.get(name)!.map((e, i) => d * e + (1 - d) * w[i]!));
      }
      average.update();
    }
    average.applyToModel();
    for (const [name, t] of params) {
      const got = t.toFloat32Array();
      reference.get(name)!.forEach((e, i) => expect(got[i]).toBeCloseTo(e, 5));
    }
  });

  it('refuses a decay outside [0, 1), naming it and the range', () => {
    expect(() => checkAverageDecay(1, 'trainDigits')).toThrow(/trainDigits: weightAverage is 1, expected a number from 0 \(no average\) up to, not including, 1/);
    expect(() => checkAverageDecay(Number.NaN, 'trainDigits')).toThrow(/weightAverage is null/);
    expect(() => new WeightAverage(new Map(), -0.1)).toThrow(/WeightAverage: weightAverage is -0.1/);
    expect(checkAverageDecay(0, 'trainDigits')).toBe(0);
  });
});
