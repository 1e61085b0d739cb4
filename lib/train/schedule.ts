// Schedules driven by the fraction of training done: the learning rate (linear warm-up, then
// cosine decay) and Castling-ViT's threshold tau for the auxiliary masked softmax branch.

import { InvalidArgValueError } from '../errors.js';

export interface LrSchedule {
  /** Peak learning rate. */
  lr: number;
  /** Steps of linear warm-up from 0 to lr (0: none). */
  warmupSteps?: number;
  /** Total steps; with it the rate decays by a half cosine to minLr. Without it, it stays at lr. */
  totalSteps?: number;
  minLr?: number;
}

/** The learning rate of 1-based step `step`. */
export function learningRateAt(step: number, s: LrSchedule): number {
  const warmup = s.warmupSteps ?? 0;
  if (warmup > 0 && step <= warmup) return (s.lr * step) / warmup;
  if (!s.totalSteps) return s.lr;
  const minLr = s.minLr ?? 0;
  const progress = Math.min(1, (step - warmup) / Math.max(1, s.totalSteps - warmup));
  return minLr + (s.lr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

export interface CastlingSchedule {
  /** Threshold before the ramp (the released code's 0.02). */
  tau0?: number;
  /** Fraction of training at which tau starts rising from tau0... */
  start?: number;
  /** ...to 1 at this fraction; from here on the branch is not computed. */
  end?: number;
  /** Weight of the L1 penalty lambda * sum(M * A) added to the loss while the branch is on. */
  l1?: number;
}

export interface AuxBranchState {
  /** The branch runs (`tau < 1`). */
  active: boolean;
  tau: number;
  l1: number;
}

/** The auxiliary branch's threshold and L1 weight at a fraction of training in [0, 1]. */
export function castlingAt(fraction: number, s: CastlingSchedule = {}): AuxBranchState {
  const tau0 = s.tau0 ?? 0.02;
  const start = s.start ?? 0.5;
  const end = s.end ?? 0.9;
  if (!(tau0 >= 0 && tau0 < 1) || !(start >= 0 && start <= end && end <= 1)) {
    throw new InvalidArgValueError(`castling schedule: expected 0 <= tau0 < 1 and 0 <= start <= end <= 1, got tau0=${tau0} start=${start} end=${end}`);
  }
  if (fraction >= end) return { active: false, tau: 1, l1: 0 };
  const tau = fraction <= start ? tau0 : tau0 + ((1 - tau0) * (fraction - start)) / (end - start);
  return { active: tau < 1, tau, l1: s.l1 ?? 0 };
}

/**
 * The auxiliary branch for the first 40% of training only (tau rises from 0.02 at 10% to 1 at
 * 40%): a step with the branch costs about 1.7x one without, and ending it early leaves most of a
 * short run to the linear attention alone, so the castled model is the one that was trained.
 */
export const EARLY_CASTLING: CastlingSchedule = Object.freeze({ tau0: 0.02, start: 0.1, end: 0.4 });

/** What a training loop reports after each step (progress bars, logs). */
export interface StepInfo {
  epoch: number;
  step: number;
  stepsPerEpoch: number;
  loss: number;
  tau: number | null;
}

/** The options the training loops (trainDigits, trainImageFolder) share; each has its defaults. */
export interface TrainingLoopOptions {
  epochs?: number;
  /** Images per optimizer step. */
  batchSize?: number;
  /** Peak learning rate (AdamW, warm-up then cosine decay). */
  lr?: number;
  weightDecay?: number;
  labelSmoothing?: number;
  /** Castling models: the auxiliary branch's schedule (default EARLY_CASTLING: on until 40% of training). */
  castling?: CastlingSchedule;
  /** Seed of the shuffling and augmentation (and of a model the loop creates). */
  seed?: number;
  /** Called after every step (progress bars, logs). */
  onStep?: (info: StepInfo) => void;
}
