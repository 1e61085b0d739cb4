// Training checkpoints of the folder loop: the model as model.save() writes it (so a checkpoint
// loads, predicts and exports as the model it holds) plus what continuing needs - AdamW's moments
// and step, the loop's random generator and image order, the epoch, and the settings that shape
// the schedule, which a resumed run must share. A run resumed from the checkpoint of epoch e
// continues exactly as the run that wrote it would have.
import { readSafetensors, type StoredTensor } from '../io/safetensors.js';
import { SeededRandom } from '../nn/random.js';
import type { LoadOptions } from '../io/model_load.js';
import '../io/model_load.js'; // VisionTransformer.fromContent
import '../io/model_save.js'; // model.saveWith
import { VisionTransformer } from '../nn/vit.js';
import type { AdamW } from './adamw.js';
import { BadFileError, InvalidArgValueError } from '../errors.js';

const MOMENT_PREFIX = { m: 'adamw.m.', v: 'adamw.v.' } as const;
const ORDER_TENSOR = 'loop.order';
const TRAINING_KEY = 'training';

/** What a resumed run must share with the run that wrote the checkpoint (its schedule, its data). */
export interface CheckpointSettings {
  epochs: number;
  batchSize: number;
  trainImages: number;
  lr: number;
  weightDecay: number;
  labelSmoothing: number;
  /** The random crop and flip settings, as JSON. */
  augmentation: string;
}

/**
 * The loop's state, besides the model: after `epoch`, or within it - after `step` of its steps
 * (a checkpoint every few steps, or a run stopped early), with the sum of those steps' losses.
 */
export interface TrainingState {
  epoch: number;
  /** Steps of `epoch` done; absent when the epoch is complete. */
  step?: number;
  /** The loss summed over those steps (for the epoch's mean). */
  lossSum?: number;
  settings: CheckpointSettings;
  optimizerStep: number;
  moments: Map<string, { m: Float32Array; v: Float32Array }>;
  random: { state: number; spare: number | null };
  /** The training images' order (the loop reshuffles it in place every epoch). */
  order: number[];
}

/**
 * What a caller keeps in a checkpoint beside the loop's state (the Sparsifiner workflow: its stage
 * and its teacher): tensors under names no model or optimizer uses, and metadata under other keys.
 */
export interface CheckpointExtras {
  tensors?: Map<string, { shape: number[]; data: Float32Array }>;
  metadata?: Record<string, string>;
}

/** Writes model + state to `path`, atomically (model.save's format, with the state beside it). */
export async function saveTrainingCheckpoint(path: string, model: VisionTransformer, optimizer: AdamW, loop: { epoch: number; step?: number; lossSum?: number; settings: CheckpointSettings; random: SeededRandom; order: readonly number[] }, extras: CheckpointExtras = {}): Promise<void> {
  const extra = new Map<string, { shape: number[]; data: Float32Array }>(extras.tensors);
  for (const [name, { m, v }] of optimizer.moments) {
    extra.set(MOMENT_PREFIX.m + name, { shape: m.shape, data: m.toFloat32Array() });
    extra.set(MOMENT_PREFIX.v + name, { shape: v.shape, data: v.toFloat32Array() });
  }
  extra.set(ORDER_TENSOR, { shape: [loop.order.length], data: Float32Array.from(loop.order) });
  const within = loop.step === undefined ? {} : { step: loop.step, lossSum: loop.lossSum ?? 0 };
  const training = { epoch: loop.epoch, ...within, settings: loop.settings, optimizerStep: optimizer.step, random: loop.random.snapshot() };
  await model.saveWith(path, extra, { ...extras.metadata, [TRAINING_KEY]: JSON.stringify(training) });
}

/**
 * The model and the loop's state from a checkpoint; `options` as for VisionTransformer.load.
 * `extras` holds what saveTrainingCheckpoint was given beside them: the tensors that are neither
 * the model's nor the optimizer's (so not listed as ignored by the model), and the metadata.
 */
export async function loadTrainingCheckpoint(path: string, options: LoadOptions = {}): Promise<{ model: VisionTransformer; state: TrainingState; extras: { tensors: Map<string, StoredTensor>; metadata: Record<string, string> } }> {
  const content = await readSafetensors(path, { allowNonFinite: options.allowNonFinite, memoryBudget: options.memoryBudget });
  const { tensors, metadata } = content;
  if (metadata[TRAINING_KEY] === undefined) throw new BadFileError(`${path}: not a training checkpoint (no training state in its metadata): a model file starts a new run with --from`);
  let training: { epoch: number; step?: number; lossSum?: number; settings: CheckpointSettings; optimizerStep: number; random: { state: number; spare: number | null } };
  try {
    training = JSON.parse(metadata[TRAINING_KEY]);
  } catch {
    throw new BadFileError(`${path}: the training state in the file's metadata is not valid JSON`);
  }
  const count = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  const s = training?.settings;
  const valid =
    count(training?.epoch) && count(training.optimizerStep) && count(training.random?.state) && (training.random.spare === null || Number.isFinite(training.random.spare)) &&
    (training.step === undefined || (count(training.step) && training.step > 0 && Number.isFinite(training.lossSum))) &&
    typeof s === 'object' && s !== null && count(s.epochs) && count(s.batchSize) && count(s.trainImages) && Number.isFinite(s.lr) && Number.isFinite(s.weightDecay) && Number.isFinite(s.labelSmoothing) && typeof s.augmentation === 'string';
  if (!valid) throw new BadFileError(`${path}: the training state in the file's metadata is not { epoch, settings, optimizerStep, random } as saveTrainingCheckpoint writes it`);
  const moments = new Map<string, { m: Float32Array; v: Float32Array }>();
  for (const [name, t] of tensors) {
    if (!name.startsWith(MOMENT_PREFIX.m)) continue;
    const param = name.slice(MOMENT_PREFIX.m.length);
    const v = tensors.get(MOMENT_PREFIX.v + param);
    if (!v) throw new BadFileError(`${path}: the checkpoint has '${name}' but not '${MOMENT_PREFIX.v + param}'`);
    moments.set(param, { m: t.data, v: v.data });
  }
  const order = tensors.get(ORDER_TENSOR);
  if (!order) throw new BadFileError(`${path}: the checkpoint has no '${ORDER_TENSOR}'`);
  const model = VisionTransformer.fromContent(content, path, options);
  // The optimizer's and the loop's tensors are the checkpoint's own, not tensors the model ignored.
  const own = (name: string) => name === ORDER_TENSOR || name.startsWith(MOMENT_PREFIX.m) || name.startsWith(MOMENT_PREFIX.v);
  const extraTensors = new Map<string, StoredTensor>();
  for (const name of model.loadReport.ignored) if (!own(name)) extraTensors.set(name, tensors.get(name)!);
  model.loadReport = { ...model.loadReport, ignored: [] };
  return { model, state: { ...training, moments, order: Array.from(order.data) }, extras: { tensors: extraTensors, metadata } };
}

/**
 * Puts `state` into a fresh optimizer of the run being resumed, after checking that the run shares
 * the checkpoint's settings (errors name each difference).
 */
export function restoreTraining(state: TrainingState, optimizer: AdamW, settings: CheckpointSettings): SeededRandom {
  const differ = (Object.keys(settings) as Array<keyof CheckpointSettings>).filter((k) => settings[k] !== state.settings[k]);
  if (differ.length > 0) {
    throw new InvalidArgValueError(`resume: the run differs from the checkpoint's in ${differ.map((k) => `${k} (${settings[k]}, the checkpoint's ${state.settings[k]})`).join(', ')}`);
  }
  for (const [name, { m, v }] of optimizer.moments) {
    const saved = state.moments.get(name);
    if (!saved || saved.m.length !== m.size || saved.v.length !== v.size) throw new BadFileError(`resume: the checkpoint has no optimizer state of the right size for '${name}'`);
    m.set(saved.m);
    v.set(saved.v);
  }
  const seen = new Set(state.order);
  if (state.order.length !== settings.trainImages || seen.size !== state.order.length || !state.order.every((i) => Number.isInteger(i) && i >= 0 && i < settings.trainImages)) {
    throw new BadFileError(`resume: the checkpoint's image order is not an order of the run's ${settings.trainImages} training images`);
  }
  optimizer.step = state.optimizerStep;
  return SeededRandom.restore(state.random);
}
