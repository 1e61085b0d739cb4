// `castling-vit train folder <dir>`: train a model on a folder of images (one subfolder per
// class), from scratch or from saved weights (a timm softmax checkpoint becomes a castling model
// here: its convolution is freshly initialised, its head too when the classes differ), or make a
// Sparsifiner model the paper's way: a dense softmax model (trained here unless loaded with the
// folder's classes), then stage 1 and stage 2.
import cliProgress from 'cli-progress';

import { listImageFolder, type ImageFolder } from '../data/image_folder.js';
import { presets, type AttentionKind, type VitConfig } from '../nn/config.js';
import { VisionTransformer } from '../vision_transformer.js';
import { loadTrainingCheckpoint } from '../train/checkpoint.js';
import { trainImageFolder, type ImageFolderTrainingOptions, type ImageFolderTrainingResult } from '../train/image_folder.js';
import { WorkflowStopped, sparsifyImageFolder, workflowOfCheckpoint, type SparsifyFolderResult, type WorkflowCheckpoint, type WorkflowSettings } from '../train/sparsify_folder.js';
import { accuracyText, epochLine } from './format.js';
import { OUTPUT_KEY, outputOfCheckpoint, refuseToReplace } from './output_file.js';
import { sparsifySummary } from './sparsify_summary.js';
import { InvalidArgValueError } from '../errors.js';

export interface TrainFolderFlags {
  from?: string;
  /** The config: of a new model, or of a weights file that has none. */
  config?: Partial<VitConfig>;
  /** Default: the file's, or castling for a new model. */
  attention?: AttentionKind;
  imageSize?: number;
  /** Default 10 (a resumed run: its checkpoint's). */
  epochs?: number;
  /** Default 32 (a resumed run: its checkpoint's). */
  batchSize?: number;
  microBatch?: number;
  lr?: number;
  valFraction: number;
  /** Random-resized crops of the training images (false: centre crops). */
  randomCrop: boolean;
  /** Their area range, as shares of an image (default [0.08, 1]). */
  cropScale?: [number, number];
  seed: number;
  /** Where the model goes (default: folder-vit.safetensors; a resumed run: its own run's). */
  out?: string;
  /** Replace an existing --out or --checkpoint file. */
  force?: boolean;
  progress: boolean;
  /** Sparsifiner (--attention sparsifiner): see VitConfig and SparsifyOptions; defaults in sparsifinerSettings. */
  keepRate?: number;
  coefficientKeep?: number;
  sharedBasis?: boolean;
  stage1Epochs?: number;
  stage2Epochs?: number;
  /** Write a training checkpoint here after every epoch. */
  checkpoint?: string;
  /** Also every this many steps. */
  checkpointEvery?: number;
  /** Continue the run that wrote this checkpoint. */
  resume?: string;
}

const DEFAULT_EPOCHS = 10;
const DEFAULT_BATCH = 32;
const DEFAULT_OUT = 'folder-vit.safetensors';

/** The flags with the output decided; what the checkpoints of the run keep of it. */
type DecidedFlags = TrainFolderFlags & { out: string };

function outputMetadata(flags: DecidedFlags): Record<string, string> {
  return { [OUTPUT_KEY]: flags.out };
}

/** The model to train: loaded (with a fresh head when the classes differ) or created. */
async function startingModel(flags: TrainFolderFlags, classes: number): Promise<VisionTransformer> {
  const overrides: Partial<VitConfig> = { ...flags.config, ...(flags.attention ? { attention: flags.attention } : {}), ...(flags.imageSize ? { imageSize: flags.imageSize } : {}) };
  if (!flags.from) return VisionTransformer.create({ ...presets.deitTiny, attention: 'castling', ...overrides, numClasses: classes, seed: flags.seed });
  const loaded = await VisionTransformer.load(flags.from, { config: overrides });
  if (loaded.config.numClasses === classes) return loaded;
  loaded.dispose();
  return VisionTransformer.load(flags.from, { config: { ...overrides, numClasses: classes }, freshHead: true });
}

/**
 * Ctrl-C during a run that writes checkpoints: the first stops it after the current step (its
 * checkpoint written: --resume goes on from there), a second quits at once.
 */
function stopOnInterrupt(): () => boolean {
  let stopping = false;
  process.once('SIGINT', () => {
    stopping = true;
    console.error('\ncastling-vit: stopping after this step to write the checkpoint (Ctrl-C again to quit now)');
    process.once('SIGINT', () => process.exit(130));
  });
  return () => stopping;
}

/** What a run stopped early says, and its exit status (130: interrupted, as a shell reports Ctrl-C). */
function reportStop(where: string, checkpoint: string): number {
  console.log(`stopped ${where}; ${checkpoint} holds the run: castling-vit train folder <dir> --resume ${checkpoint}`);
  process.exitCode = 130;
  return Number.NaN;
}

/** The options of every trainImageFolder run of the command but the model, epochs, lr and seed. */
function loopOptions(folder: ImageFolder, flags: TrainFolderFlags): Omit<ImageFolderTrainingOptions, 'model'> {
  const bar = flags.progress
    ? new cliProgress.SingleBar({ format: 'epoch {epoch} [{bar}] {value}/{total} steps | loss {loss}', clearOnComplete: true, hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  let barEpoch = 0; // the epoch the bar shows (a resumed one starts mid-way)
  const interrupted = flags.checkpoint || flags.resume ? stopOnInterrupt() : null;
  return {
    folder,
    checkpointEvery: flags.checkpointEvery,
    shouldStop: interrupted
      ? () => {
          if (interrupted()) bar?.stop();
          return interrupted();
        }
      : undefined,
    batchSize: flags.batchSize ?? DEFAULT_BATCH,
    microBatch: flags.microBatch,
    randomCrop: flags.randomCrop && { scale: flags.cropScale },
    onStep: ({ epoch, step, stepsPerEpoch, loss }) => {
      if (!bar) return;
      if (barEpoch !== epoch) {
        barEpoch = epoch;
        bar.start(stepsPerEpoch, step - 1, { epoch, loss: loss.toFixed(3) });
      }
      bar.update(step, { epoch, loss: loss.toFixed(3) });
      if (step === stepsPerEpoch) bar.stop();
    },
    onEpoch: ({ epoch, loss, valAccuracy, seconds }) =>
      console.log(epochLine(epoch, loss, valAccuracy, seconds)),
  };
}

function describeStart(folder: ImageFolder, model: VisionTransformer, flags: TrainFolderFlags): string {
  const { initialised: fresh, resized } = model.loadReport;
  const { width, depth, imageSize, attention } = model.config;
  return (
    `${folder.classes.length} classes (${folder.classes.join(', ')}): ${folder.train.files.length} images to train, ${folder.val.files.length} held out; ` +
    `${attention} ViT ${width} wide, ${depth} deep, ${imageSize}² images${flags.from ? `, from ${flags.from}${fresh.length ? ` (${fresh.length} tensors fresh)` : ''}${resized.length ? ` (resampled: ${resized.join(', ')})` : ''}` : ''}`
  );
}

/** Pretrained weights move less: a tenth of the from-scratch rate unless asked. */
function learningRate(flags: TrainFolderFlags): number {
  return flags.lr ?? (flags.from ? 5e-5 : 5e-4);
}

export async function trainFolderCommand(dir: string, given: TrainFolderFlags): Promise<number> {
  const folder = listImageFolder(dir, { valFraction: given.valFraction });
  if (given.resume) return resumeRun(folder, given);
  const flags: DecidedFlags = { ...given, out: given.out ?? DEFAULT_OUT };
  // Refused before any training: the files a run would write over.
  refuseToReplace(flags.out, flags.force, '--out');
  if (flags.checkpoint) refuseToReplace(flags.checkpoint, flags.force, '--checkpoint');
  // --attention sparsifiner starts from the file's own kind (or a new softmax model): a softmax
  // model goes through the Sparsifiner workflow, a Sparsifiner model trains on as it is.
  const sparsifying = flags.attention === 'sparsifiner';
  const model = await startingModel(sparsifying ? { ...flags, attention: flags.from ? undefined : 'softmax' } : flags, folder.classes.length);
  model.labels = folder.classes;
  console.log(describeStart(folder, model, flags));
  if (sparsifying && model.config.attention === 'softmax') return sparsifinerWorkflow(folder, flags, { dense: model });
  if (sparsifying && model.config.attention !== 'sparsifiner') {
    model.dispose();
    throw new InvalidArgValueError(`${flags.from} is a ${model.config.attention} model: a Sparsifiner model is made from a softmax one`);
  }
  const result = await trainImageFolder({
    ...loopOptions(folder, flags),
    model,
    epochs: flags.epochs ?? DEFAULT_EPOCHS,
    lr: learningRate(flags),
    seed: flags.seed,
    checkpoint: flags.checkpoint,
    checkpointExtras: () => ({ metadata: outputMetadata(flags) }),
  });
  return finish(model, result, flags);
}

/** The end of a single-stage run: the switch's figures, the saved model. */
async function finish(model: VisionTransformer, result: ImageFolderTrainingResult, flags: DecidedFlags): Promise<number> {
  if (result.stopped) {
    model.dispose();
    return reportStop(`after step ${result.stopped.step} of epoch ${result.stopped.epoch}`, flags.checkpoint ?? flags.resume!);
  }
  if (model.config.attention === 'castling') console.log(`castled: held-out accuracy ${accuracyText(result.accuracyBeforeSwitch)} before the switch, ${accuracyText(result.valAccuracy)} after`);
  await model.save(flags.out);
  console.log(`trained in ${result.trainSeconds.toFixed(1)} s; saved ${flags.out} (labels: the class folders)`);
  model.dispose();
  return result.valAccuracy;
}

/**
 * --resume: the run that wrote the checkpoint, from the epoch after it. Its model, epochs, batch
 * size and learning rate come from the checkpoint (given again, they must agree); it goes on
 * writing checkpoints (to --checkpoint, else over the one it resumed from). A checkpoint of the
 * Sparsifiner workflow resumes the workflow: the rest of its stage, then the stages after it.
 */
async function resumeRun(folder: ImageFolder, given: TrainFolderFlags): Promise<number> {
  if (given.from || given.attention || given.imageSize) throw new InvalidArgValueError('--resume continues a run as it was: its model comes from the checkpoint (no --from, --attention or --image-size)');
  const path = given.resume!;
  if (given.checkpoint && given.checkpoint !== path) refuseToReplace(given.checkpoint, given.force, '--checkpoint');
  const loaded = await loadTrainingCheckpoint(path, { config: given.config });
  const { model, state } = loaded;
  let workflow: WorkflowCheckpoint | null = null;
  // The output the run was started with, unless another is given (a checkpoint from before outputs
  // were kept: the default).
  const flags: DecidedFlags = { ...given, out: given.out ?? outputOfCheckpoint(loaded.extras.metadata) ?? DEFAULT_OUT };
  try {
    refuseToReplace(flags.out, flags.force, given.out ? '--out' : `the output of the run ${path} holds`);
    const labels = model.labels ?? [];
    if (labels.join('\n') !== folder.classes.join('\n')) throw new InvalidArgValueError(`${path} was trained on the classes ${labels.join(', ')}; the folder has ${folder.classes.join(', ')}`);
    workflow = workflowOfCheckpoint(path, loaded);
  } catch (error) {
    model.dispose();
    throw error;
  }
  const { settings } = state;
  const stage = workflow ? ` (the Sparsifiner workflow's ${workflow.stage} stage)` : '';
  const after = state.step === undefined ? `after epoch ${state.epoch} of ${settings.epochs}` : `after step ${state.step} of epoch ${state.epoch} (of ${settings.epochs})`;
  console.log(`${describeStart(folder, model, flags)}; resuming ${path}${stage} ${after}`);
  const loopFlags = { ...flags, batchSize: flags.batchSize ?? settings.batchSize };
  if (workflow) return sparsifinerWorkflow(folder, loopFlags, { resume: workflow, checkpoint: flags.checkpoint ?? path });
  try {
    const result = await trainImageFolder({
      ...loopOptions(folder, loopFlags),
      model,
      epochs: flags.epochs ?? settings.epochs,
      lr: flags.lr ?? settings.lr,
      weightDecay: settings.weightDecay,
      resume: state,
      checkpoint: flags.checkpoint ?? path,
      checkpointExtras: () => ({ metadata: outputMetadata(flags) }),
    });
    return await finish(model, result, flags);
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/** The workflow's settings from the flags; `trained`: the dense model came trained on the folder. */
function sparsifinerSettings(flags: TrainFolderFlags, trained: boolean): WorkflowSettings {
  return {
    denseEpochs: trained ? undefined : (flags.epochs ?? DEFAULT_EPOCHS),
    denseLr: trained ? undefined : learningRate(flags),
    keepRate: flags.keepRate ?? 0.25,
    coefficientKeep: flags.coefficientKeep ?? 0,
    sharedBasis: flags.sharedBasis ?? false,
    stage1Epochs: flags.stage1Epochs ?? 2,
    stage2Epochs: flags.stage2Epochs ?? 3,
    finetuneLr: flags.lr ?? (trained ? 5e-5 : 3e-4),
    seed: flags.seed,
  };
}

/** A resumed workflow keeps its checkpoint's settings: a flag given again must agree. */
function checkResumedSettings(flags: TrainFolderFlags, s: WorkflowSettings): void {
  const given: Array<[string, unknown, unknown]> = [
    ['--keep-rate', flags.keepRate, s.keepRate],
    ['--coefficient-keep', flags.coefficientKeep, s.coefficientKeep],
    ['--shared-basis', flags.sharedBasis, s.sharedBasis],
    ['--stage1-epochs', flags.stage1Epochs, s.stage1Epochs],
    ['--stage2-epochs', flags.stage2Epochs, s.stage2Epochs],
    ['--epochs', flags.epochs, s.denseEpochs],
    ['--lr', flags.lr, s.finetuneLr],
  ];
  const differ = given.filter(([, flag, saved]) => flag !== undefined && flag !== saved);
  if (differ.length > 0) throw new InvalidArgValueError(`resume: the run differs from the checkpoint's workflow in ${differ.map(([name, flag, saved]) => `${name} (${flag}, the checkpoint's ${saved ?? 'none'})`).join(', ')}`);
}

/**
 * The paper's workflow on the folder: from `dense`, a softmax model, trained on the folder for
 * --epochs first unless it was loaded with the folder's classes (and image size), then stage 1
 * and stage 2; or the rest of a workflow from its checkpoint.
 */
async function sparsifinerWorkflow(folder: ImageFolder, flags: DecidedFlags, start: { dense: VisionTransformer } | { resume: WorkflowCheckpoint; checkpoint: string }): Promise<number> {
  const started = performance.now();
  let trained: boolean;
  // The models handed in: disposed here when the workflow ends without a result.
  const passed = 'dense' in start ? [start.dense] : [start.resume.model, start.resume.dense];
  let result: SparsifyFolderResult;
  try {
    let settings: WorkflowSettings;
    if ('resume' in start) {
      settings = start.resume.settings;
      trained = settings.denseEpochs === undefined;
      checkResumedSettings(flags, settings);
    } else {
      // Loaded with the folder's classes at its own image size: already the dense model of this data.
      const { loadReport } = start.dense;
      trained = flags.from !== undefined && !loadReport.initialised.includes('head.weight') && loadReport.resized.length === 0;
      settings = sparsifinerSettings(flags, trained);
    }
    result = await sparsifyImageFolder({
      folder,
      dense: 'dense' in start ? start.dense : undefined,
      settings,
      loop: loopOptions(folder, flags),
      checkpoint: 'resume' in start ? start.checkpoint : flags.checkpoint,
      checkpointMetadata: outputMetadata(flags),
      resume: 'resume' in start ? start.resume : undefined,
      onStage: (stage) =>
        console.log(
          stage === 'dense'
            ? `-- dense softmax model${trained ? `: loaded with the folder's ${folder.classes.length} classes (not trained further)` : ''}`
            : stage === 'reconstruction'
              ? '-- stage 1: attention reconstruction (backbone frozen)'
              : '-- stage 2: fine-tuning with sparse attention',
        ),
    });
  } catch (error) {
    for (const m of passed) m?.dispose();
    if (!(error instanceof WorkflowStopped)) throw error;
    return reportStop(`in the ${error.stage} stage after step ${error.step} of epoch ${error.epoch}`, 'resume' in start ? start.checkpoint : flags.checkpoint!);
  }
  await result.sparse.save(flags.out);
  for (const line of sparsifySummary(result, result.denseAccuracy)) console.log(line);
  console.log(`${((performance.now() - started) / 1000).toFixed(1)} s in all; saved ${flags.out} (labels: the class folders)`);
  result.dense.dispose();
  result.sparse.dispose();
  return result.sparseAccuracy;
}
