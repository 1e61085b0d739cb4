// The Sparsifiner workflow on a folder of images (`castling-vit train folder --attention
// sparsifiner`): the dense softmax model trained on the folder (unless it already was), then
// stage 1 and stage 2 (sparsify.ts). With a checkpoint path, every epoch of every stage writes a
// training checkpoint that the whole workflow resumes from: the stage, the settings and the
// accuracies so far ride in its metadata, and in stages 1 and 2 the dense model (stage 2's
// teacher) rides as tensors beside the model being trained, so one file is the whole state.
import type { ImageFolder } from '../data/image_folder.js';
import type { StoredTensor } from '../io/safetensors.js';
import { resolveConfig, type VitConfig } from '../nn/config.js';
import { parameterSpecs } from '../nn/parameters.js';
import '../io/model_load.js'; // VisionTransformer.fromContent
import { VisionTransformer } from '../nn/vit.js';
import type { CheckpointExtras, TrainingState } from './checkpoint.js';
import { imageAccuracy, trainImageFolder, type ImageFolderTrainingOptions, type ImageFolderTrainingResult } from './image_folder.js';
import { sparsify, type SparsifyResult, type TrainingRun } from './sparsify.js';
import { AbortedError, BadFileError, InvalidArgValueError } from '../errors.js';

const WORKFLOW_KEY = 'sparsifinerWorkflow';
const TEACHER_PREFIX = 'teacher.';

export type WorkflowStage = 'dense' | 'reconstruction' | 'finetune';

/** What shapes a workflow; a resumed one takes them from its checkpoint. */
export interface WorkflowSettings {
  /** Epochs of dense training on the folder; absent when the dense model came trained on it. */
  denseEpochs?: number;
  /** Peak learning rate of the dense training. */
  denseLr?: number;
  keepRate: number;
  coefficientKeep: number;
  sharedBasis: boolean;
  stage1Epochs: number;
  stage2Epochs: number;
  /** Stage 2's peak learning rate. */
  finetuneLr: number;
  seed: number;
}

interface WorkflowRecord {
  stage: WorkflowStage;
  settings: WorkflowSettings;
  /** The dense model's config (the teacher's, rebuilt from the checkpoint in stages 1 and 2). */
  denseConfig: VitConfig;
  denseAccuracy?: number;
  reconstructedAccuracy?: number;
}

/** A workflow's training checkpoint, loaded: where it stopped, and the models to go on with. */
export interface WorkflowCheckpoint {
  path: string;
  stage: WorkflowStage;
  settings: WorkflowSettings;
  /** The model being trained at that stage: the dense one, or the Sparsifiner model. */
  model: VisionTransformer;
  state: TrainingState;
  /** Stages 1 and 2: the dense model, rebuilt from the checkpoint. */
  dense?: VisionTransformer;
  denseAccuracy?: number;
  reconstructedAccuracy?: number;
}

export interface SparsifyFolderOptions {
  folder: ImageFolder;
  /** The softmax model to start from (unused when resuming stage 1 or 2: the checkpoint has it). */
  dense?: VisionTransformer;
  settings: WorkflowSettings;
  /** Every stage's loop options but those the workflow sets. */
  loop: Omit<ImageFolderTrainingOptions, 'folder' | 'model' | 'epochs' | 'lr' | 'weightDecay' | 'seed' | 'stage' | 'distillation' | 'checkpoint' | 'checkpointExtras' | 'resume'>;
  /** Write a checkpoint of the workflow here after every epoch. */
  checkpoint?: string;
  /** More metadata for every checkpoint (the command's output file, which a resumed run saves to). */
  checkpointMetadata?: Record<string, string>;
  resume?: WorkflowCheckpoint;
  /** Each stage as it starts ('dense' also when the dense model is only evaluated). */
  onStage?: (stage: WorkflowStage) => void;
}

/**
 * A workflow stopped early by `loop.shouldStop` (its checkpoint, if any, written): where. The
 * models passed in are left to the caller; the Sparsifiner model made inside is disposed.
 */
export class WorkflowStopped extends AbortedError {
  constructor(
    readonly stage: WorkflowStage,
    readonly epoch: number,
    readonly step: number,
  ) {
    super(`the Sparsifiner workflow stopped in its ${stage} stage, after step ${step} of epoch ${epoch}`);
    this.name = 'WorkflowStopped';
  }
}

export interface SparsifyFolderResult extends SparsifyResult {
  dense: VisionTransformer;
  denseAccuracy: number;
}

/**
 * Runs (or, with `resume`, finishes) the workflow; resolves to the Sparsifiner model and the dense
 * one it was made from (the caller disposes both).
 */
export async function sparsifyImageFolder(o: SparsifyFolderOptions): Promise<SparsifyFolderResult> {
  const { folder, settings: s, resume } = o;
  const dense = resume?.dense ?? (resume?.stage === 'dense' ? resume.model : o.dense);
  if (!dense) throw new InvalidArgValueError('sparsifyImageFolder: a dense softmax model is needed to start from');
  let denseAccuracy = resume?.denseAccuracy ?? Number.NaN;
  let reconstructedAccuracy = resume?.reconstructedAccuracy;
  let teacher: Map<string, { shape: number[]; data: Float32Array }> | null = null;
  const extras = (stage: WorkflowStage): CheckpointExtras => {
    const record: WorkflowRecord = { stage, settings: s, denseConfig: dense.config, denseAccuracy, reconstructedAccuracy };
    if (stage !== 'dense') teacher ??= new Map([...dense.parameters()].map(([name, t]) => [TEACHER_PREFIX + name, { shape: t.shape, data: t.toFloat32Array() }]));
    return { metadata: { ...o.checkpointMetadata, [WORKFLOW_KEY]: JSON.stringify(record) }, tensors: stage === 'dense' ? undefined : teacher! };
  };
  const checkpointing = (stage: WorkflowStage) => (o.checkpoint ? { checkpoint: o.checkpoint, checkpointExtras: () => extras(stage) } : {});
  const resumeAt = (stage: WorkflowStage) => (resume?.stage === stage ? resume.state : undefined);

  const accuracyOf = (stage: WorkflowStage, result: ImageFolderTrainingResult) => {
    if (result.stopped) throw new WorkflowStopped(stage, result.stopped.epoch, result.stopped.step);
    return result.valAccuracy;
  };
  if (!resume || resume.stage === 'dense') {
    o.onStage?.('dense');
    denseAccuracy =
      s.denseEpochs === undefined
        ? await imageAccuracy(dense, folder.val)
        : accuracyOf('dense', await trainImageFolder({ ...o.loop, folder, model: dense, epochs: s.denseEpochs, lr: s.denseLr, seed: s.seed, ...checkpointing('dense'), resume: resumeAt('dense') }));
  }
  const run: TrainingRun = async (r) => {
    const stage: WorkflowStage = r.stage === 'reconstruction' ? 'reconstruction' : 'finetune';
    const valAccuracy = accuracyOf(stage, await trainImageFolder({ ...o.loop, ...r, folder, ...checkpointing(stage), resume: resumeAt(stage) }));
    if (stage === 'reconstruction') reconstructedAccuracy = valAccuracy;
    return valAccuracy;
  };
  const result = await sparsify(dense, run, {
    keepRate: s.keepRate,
    coefficientKeep: s.coefficientKeep,
    sharedBasis: s.sharedBasis,
    reconstructionEpochs: s.stage1Epochs,
    finetuneEpochs: s.stage2Epochs,
    finetuneLr: s.finetuneLr,
    seed: s.seed,
    onStage: (stage) => o.onStage?.(stage.startsWith('stage 1') ? 'reconstruction' : 'finetune'),
    resume: resume && resume.stage !== 'dense' ? { sparse: resume.model, stage: resume.stage, reconstructedAccuracy: resume.reconstructedAccuracy } : undefined,
  });
  return { ...result, dense, denseAccuracy };
}

/**
 * The workflow a training checkpoint belongs to, or null for a single-stage run's checkpoint.
 * In stages 1 and 2 the dense model is rebuilt from the tensors beside the checkpoint's model.
 */
export function workflowOfCheckpoint(path: string, loaded: { model: VisionTransformer; state: TrainingState; extras: { tensors: Map<string, StoredTensor>; metadata: Record<string, string> } }): WorkflowCheckpoint | null {
  const text = loaded.extras.metadata[WORKFLOW_KEY];
  if (text === undefined) return null;
  let record: WorkflowRecord;
  try {
    record = JSON.parse(text);
  } catch {
    throw new BadFileError(`${path}: the Sparsifiner workflow in the file's metadata is not valid JSON`);
  }
  const stages: WorkflowStage[] = ['dense', 'reconstruction', 'finetune'];
  if (typeof record !== 'object' || record === null || !stages.includes(record.stage) || !validSettings(record.settings) || typeof record.denseConfig !== 'object' || record.denseConfig === null) {
    throw new BadFileError(`${path}: the Sparsifiner workflow in the file's metadata is not { stage, settings, denseConfig } as a workflow checkpoint writes it`);
  }
  const { model, state } = loaded;
  const expected = record.stage === 'dense' ? 'softmax' : 'sparsifiner';
  if (model.config.attention !== expected) throw new BadFileError(`${path}: a checkpoint of the workflow's ${record.stage} stage holds a ${model.config.attention} model, expected ${expected}`);
  const checkpoint: WorkflowCheckpoint = { path, stage: record.stage, settings: record.settings, model, state, denseAccuracy: record.denseAccuracy, reconstructedAccuracy: record.reconstructedAccuracy };
  if (record.stage !== 'dense') checkpoint.dense = teacherOf(path, loaded.extras.tensors, record.denseConfig, model);
  return checkpoint;
}

function validSettings(s: unknown): s is WorkflowSettings {
  if (typeof s !== 'object' || s === null) return false;
  const v = s as Record<string, unknown>;
  const positive = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && x > 0;
  const count = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  const optional = (x: unknown, check: (y: unknown) => boolean) => x === undefined || check(x);
  return positive(v.keepRate) && count(v.coefficientKeep) && typeof v.sharedBasis === 'boolean' && count(v.stage1Epochs) && count(v.stage2Epochs) &&
    positive(v.finetuneLr) && count(v.seed) && optional(v.denseEpochs, count) && optional(v.denseLr, positive);
}

/** The dense model of a stage-1 or stage-2 checkpoint, from its teacher tensors. */
function teacherOf(path: string, tensors: Map<string, StoredTensor>, config: VitConfig, sparse: VisionTransformer): VisionTransformer {
  const own = new Map<string, StoredTensor>();
  for (const [name, t] of tensors) if (name.startsWith(TEACHER_PREFIX)) own.set(name.slice(TEACHER_PREFIX.length), t);
  const source = `${path} (the dense model beside it)`;
  const resolved = resolveConfig(config);
  // Named here as the teacher's, before fromContent would call the file damaged.
  const missing = resolved.attention === 'softmax' ? parameterSpecs(resolved).map((spec) => spec.name).filter((name) => !own.has(name)) : [];
  if (resolved.attention !== 'softmax' || missing.length > 0) {
    throw new BadFileError(`${source}: expected a softmax model's tensors under '${TEACHER_PREFIX}'${missing.length ? `; missing ${missing.slice(0, 3).join(', ')}${missing.length > 3 ? ', ...' : ''}` : ''}`);
  }
  const dense = VisionTransformer.fromContent({ tensors: own, metadata: { config: JSON.stringify(resolved) } }, source);
  dense.preprocessing = sparse.preprocessing;
  if (sparse.labels) dense.labels = sparse.labels;
  return dense;
}
