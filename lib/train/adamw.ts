// AdamW (decoupled weight decay) over a model's parameters, with the learning-rate schedule and
// optional gradient clipping. The update itself runs natively inside the training step's plan;
// this class owns the moments, the step count and the per-step [lr, step] tensor the plan reads.
import { Tensor } from '../tensor.js';
import { learningRateAt, type LrSchedule } from './schedule.js';
import { InvalidArgTypeError, InvalidArgValueError } from '../errors.js';

export interface AdamWOptions extends LrSchedule {
  /** Decoupled weight decay (not applied to norms, biases, the class token or position embedding). */
  weightDecay?: number;
  betas?: [number, number];
  eps?: number;
  /** Clip the global gradient norm to this (0 or absent: no clipping). */
  maxGradNorm?: number;
}

/** timm's rule: no decay for 1-D parameters (norms, biases) and the tokens / position embedding. */
export function decays(name: string, shape: readonly number[]): boolean {
  return shape.length > 1 && name !== 'cls_token' && name !== 'pos_embed' && !name.endsWith('.bias');
}

export class AdamW {
  readonly options: Required<Omit<AdamWOptions, 'totalSteps'>> & { totalSteps?: number };
  /** First and second moments per parameter name. */
  readonly moments = new Map<string, { m: Tensor; v: Tensor }>();
  readonly params: Map<string, Tensor>;
  /** Steps taken so far. */
  step = 0;
  /** @internal [lr, step] of the step being run, read by the native update. */
  readonly scheduleTensor = Tensor.zeros([2]);

  constructor(params: Map<string, Tensor>, options: AdamWOptions) {
    if (!(params instanceof Map)) throw new InvalidArgTypeError('AdamW: params must be a Map of name to Tensor (model.parameters())');
    if (typeof options !== 'object' || options === null) throw new InvalidArgTypeError('AdamW: expected options { lr, weightDecay?, warmupSteps?, totalSteps?, ... }');
    const o = {
      lr: options.lr,
      warmupSteps: options.warmupSteps ?? 0,
      totalSteps: options.totalSteps,
      minLr: options.minLr ?? 0,
      weightDecay: options.weightDecay ?? 0.05,
      betas: options.betas ?? ([0.9, 0.999] as [number, number]),
      eps: options.eps ?? 1e-8,
      maxGradNorm: options.maxGradNorm ?? 0,
    };
    if (!(o.lr > 0 && Number.isFinite(o.lr))) throw new InvalidArgValueError(`AdamW: lr is ${o.lr}, expected a positive number`);
    if (!(Number.isInteger(o.warmupSteps) && o.warmupSteps >= 0)) throw new InvalidArgValueError(`AdamW: warmupSteps is ${o.warmupSteps}, expected an integer >= 0`);
    if (!(o.minLr >= 0 && o.minLr <= o.lr)) throw new InvalidArgValueError(`AdamW: minLr is ${o.minLr}, expected a number from 0 to lr (${o.lr})`);
    if (!(Array.isArray(o.betas) && o.betas.length === 2)) throw new InvalidArgTypeError(`AdamW: betas are ${JSON.stringify(o.betas)}, expected [beta1, beta2]`);
    if (!(o.weightDecay >= 0 && Number.isFinite(o.weightDecay))) throw new InvalidArgValueError(`AdamW: weightDecay is ${o.weightDecay}, expected a finite number >= 0`);
    if (!o.betas.every((b) => b >= 0 && b < 1)) throw new InvalidArgValueError(`AdamW: betas are [${o.betas}], expected numbers in [0, 1)`);
    if (!(o.eps > 0 && Number.isFinite(o.eps))) throw new InvalidArgValueError(`AdamW: eps is ${o.eps}, expected a finite number > 0`);
    if (!(o.maxGradNorm >= 0 && Number.isFinite(o.maxGradNorm))) throw new InvalidArgValueError(`AdamW: maxGradNorm is ${o.maxGradNorm}, expected a finite number >= 0 (0: no clipping)`);
    if (o.totalSteps !== undefined && !(Number.isInteger(o.totalSteps) && o.totalSteps > 0)) throw new InvalidArgValueError(`AdamW: totalSteps is ${o.totalSteps}, expected a positive integer`);
    this.options = o;
    this.params = new Map(params);
    // Beside their parameter (the update runs where the parameters are).
    for (const [name, t] of params) this.moments.set(name, { m: Tensor.zeros(t.shape, t.device), v: Tensor.zeros(t.shape, t.device) });
  }

  /** The learning rate of a 1-based step. */
  learningRate(step = this.step + 1): number {
    return learningRateAt(step, this.options);
  }

  /** Fraction of training done (step / totalSteps), 0 without totalSteps. */
  get fraction(): number {
    return this.options.totalSteps ? Math.min(1, this.step / this.options.totalSteps) : 0;
  }

  /** Whether dispose() has run. */
  get disposed(): boolean {
    return this.scheduleTensor.disposed;
  }

  /**
   * Frees the moments (twice the parameters' memory) now rather than at garbage collection;
   * trainStep refuses the optimizer afterwards. The parameters stay the model's.
   */
  dispose(): void {
    for (const { m, v } of this.moments.values()) {
      m.dispose();
      v.dispose();
    }
    this.scheduleTensor.dispose();
  }

  /**
   * @internal One step as a transaction: the step count advances and [lr, step] is written to
   * scheduleTensor for the native update, which `update` runs; if it fails, the count goes back,
   * as if the step had not been taken. Resolves to the step's learning rate and update's result.
   */
  async takeStep<T>(update: () => Promise<T>): Promise<{ lr: number; result: T }> {
    this.step += 1;
    const lr = this.learningRate(this.step);
    try {
      this.scheduleTensor.set(Float32Array.from([lr, this.step]));
      return { lr, result: await update() };
    } catch (error) {
      this.step -= 1;
      throw error;
    }
  }
}
