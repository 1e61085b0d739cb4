// An exponential moving average of a model's weights over the steps of training, swapped into the
// model at the end. Late in a run each step still moves the weights by the noise of its batch;
// the average of the last few hundred steps sits nearer the middle of where they wander, and
// usually classifies held-out images a little better than the last step's weights alone.
import type { Tensor } from '../tensor.js';
import { InvalidArgValueError } from '../errors.js';

/** Checks an averaging decay: 0 (no average) or a number in (0, 1). */
export function checkAverageDecay(decay: number, what: string): number {
  if (typeof decay !== 'number' || !(decay >= 0 && decay < 1)) throw new InvalidArgValueError(`${what}: weightAverage is ${JSON.stringify(decay)}, expected a number from 0 (no average) up to, not including, 1`);
  return decay;
}

export class WeightAverage {
  /** The averages, in float64 (a float32 sum would lose updates of a few parts in 1e4 to rounding). */
  private readonly averages: Float64Array[];
  private readonly weights: Float32Array[];
  /** update() calls so far. */
  private updates = 0;

  /**
   * Starts the average at the parameters' values now. Each update() moves it `1 - decay` of the
   * way to the weights then: it spans about 1 / (1 - decay) steps. The first updates use a smaller
   * decay (decayAt), so that a short run does not end near its starting weights.
   */
  constructor(
    params: Map<string, Tensor>,
    readonly decay: number,
  ) {
    checkAverageDecay(decay, 'WeightAverage');
    // Views: the training step writes the weights in place, so they always read the latest values.
    this.weights = [...params.values()].map((t) => t.view());
    this.averages = this.weights.map((w) => Float64Array.from(w));
  }

  /** The decay of update number `update` (1-based): (1 + u) / (10 + u) until that reaches `decay`. */
  decayAt(update: number): number {
    return Math.min(this.decay, (1 + update) / (10 + update));
  }

  /** Folds the weights now into the average (between steps: no step may be writing them). */
  update(): void {
    this.updates += 1;
    const rate = 1 - this.decayAt(this.updates);
    for (let p = 0; p < this.weights.length; p++) {
      const weight = this.weights[p]!;
      const average = this.averages[p]!;
      for (let i = 0; i < weight.length; i++) average[i]! += rate * (weight[i]! - average[i]!);
    }
  }

  /** Writes the average into the model's weights (replacing the last step's values). */
  applyToModel(): void {
    for (let p = 0; p < this.weights.length; p++) this.weights[p]!.set(this.averages[p]!);
  }
}
