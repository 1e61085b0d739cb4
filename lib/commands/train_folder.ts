// `castling-vit train folder <dir>`: train a model on a folder of images (one subfolder per
// class), from scratch or from saved weights (a timm softmax checkpoint becomes a castling model
// here: its convolution is freshly initialised, its head too when the classes differ), or make a
// Sparsifiner model the paper's way: a dense softmax model (trained here unless loaded with the
// folder's classes), then stage 1 and stage 2.
import cliProgress from 'cli-progress';

import { listImageFolder, type ImageFolder } from '../data/image_folder.js';
import { presets, type AttentionKind, type VitConfig } from '../nn/config.js';
import { VisionTransformer } from '../nn/vit.js';
import { loadTrainingCheckpoint } from '../train/checkpoint.js';
import { imageAccuracy, trainImageFolder, type ImageFolderTrainingOptions, type ImageFolderTrainingResult } from '../train/image_folder.js';
import { sparsify, type TrainingRun } from '../train/sparsify.js';
import { accuracyText, epochLine } from './format.js';
import { sparsifySummary } from './sparsify_summary.js';

export interface TrainFolderFlags {
  from?: string;
  /** The config: of a new model, or of a weights file that has none. */
  config?: VitConfig;
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
  out: string;
  progress: boolean;
  /** Sparsifiner (--attention sparsifiner): see VitConfig and SparsifyOptions. */
  keepRate?: number;
  coefficientKeep?: number;
  sharedBasis?: boolean;
  stage1Epochs?: number;
  stage2Epochs?: number;
  /** Write a training checkpoint here after every epoch. */
  checkpoint?: string;
  /** Continue the run that wrote this checkpoint. */
  resume?: string;
}

const DEFAULT_EPOCHS = 10;
const DEFAULT_BATCH = 32;

/** The model to train: loaded (with a fresh head when the classes differ) or created. */
async function startingModel(flags: TrainFolderFlags, classes: number): Promise<VisionTransformer> {
  const overrides: Partial<VitConfig> = { ...flags.config, ...(flags.attention ? { attention: flags.attention } : {}), ...(flags.imageSize ? { imageSize: flags.imageSize } : {}) };
  if (!flags.from) return VisionTransformer.create({ ...presets.deitTiny, attention: 'castling', ...overrides, numClasses: classes, seed: flags.seed });
  const loaded = await VisionTransformer.load(flags.from, { config: overrides });
  if (loaded.config.numClasses === classes) return loaded;
  loaded.dispose();
  return VisionTransformer.load(flags.from, { config: { ...overrides, numClasses: classes }, freshHead: true });
}

/** The options of every trainImageFolder run of the command but the model, epochs, lr and seed. */
function loopOptions(folder: ImageFolder, flags: TrainFolderFlags): Omit<ImageFolderTrainingOptions, 'model'> {
  const bar = flags.progress
    ? new cliProgress.SingleBar({ format: 'epoch {epoch} [{bar}] {value}/{total} steps | loss {loss}', clearOnComplete: true, hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  return {
    folder,
    batchSize: flags.batchSize ?? DEFAULT_BATCH,
    microBatch: flags.microBatch,
    randomCrop: flags.randomCrop && { scale: flags.cropScale },
    onStep: ({ epoch, step, stepsPerEpoch, loss }) => {
      if (!bar) return;
      if (step === 1) bar.start(stepsPerEpoch, 0, { epoch, loss: loss.toFixed(3) });
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

export async function trainFolderCommand(dir: string, flags: TrainFolderFlags): Promise<number> {
  const folder = listImageFolder(dir, { valFraction: flags.valFraction });
  if (flags.resume) return resumeRun(folder, flags);
  // --attention sparsifiner starts from the file's own kind (or a new softmax model): a softmax
  // model goes through the Sparsifiner workflow, a Sparsifiner model trains on as it is.
  const sparsifying = flags.attention === 'sparsifiner';
  const model = await startingModel(sparsifying ? { ...flags, attention: flags.from ? undefined : 'softmax' } : flags, folder.classes.length);
  model.labels = folder.classes;
  console.log(describeStart(folder, model, flags));
  if (sparsifying && model.config.attention === 'softmax') return sparsifinerWorkflow(folder, model, flags);
  if (sparsifying && model.config.attention !== 'sparsifiner') {
    model.dispose();
    throw new Error(`${flags.from} is a ${model.config.attention} model: a Sparsifiner model is made from a softmax one`);
  }
  const result = await trainImageFolder({ ...loopOptions(folder, flags), model, epochs: flags.epochs ?? DEFAULT_EPOCHS, lr: learningRate(flags), seed: flags.seed, checkpoint: flags.checkpoint });
  return finish(model, result, flags);
}

/** The end of a single-stage run: the switch's figures, the saved model. */
async function finish(model: VisionTransformer, result: ImageFolderTrainingResult, flags: TrainFolderFlags): Promise<number> {
  if (model.config.attention === 'castling') console.log(`castled: held-out accuracy ${accuracyText(result.accuracyBeforeSwitch)} before the switch, ${accuracyText(result.valAccuracy)} after`);
  await model.save(flags.out);
  console.log(`trained in ${result.trainSeconds.toFixed(1)} s; saved ${flags.out} (labels: the class folders)`);
  model.dispose();
  return result.valAccuracy;
}

/**
 * --resume: the run that wrote the checkpoint, from the epoch after it. Its model, epochs, batch
 * size and learning rate come from the checkpoint (given again, they must agree); it goes on
 * writing checkpoints (to --checkpoint, else over the one it resumed from).
 */
async function resumeRun(folder: ImageFolder, flags: TrainFolderFlags): Promise<number> {
  if (flags.from || flags.attention || flags.imageSize) throw new Error('--resume continues a run as it was: its model comes from the checkpoint (no --from, --attention or --image-size)');
  const path = flags.resume!;
  const { model, state } = await loadTrainingCheckpoint(path, { config: flags.config });
  const labels = model.labels ?? [];
  if (labels.join('\n') !== folder.classes.join('\n')) {
    model.dispose();
    throw new Error(`${path} was trained on the classes ${labels.join(', ')}; the folder has ${folder.classes.join(', ')}`);
  }
  const { settings } = state;
  console.log(`${describeStart(folder, model, flags)}; resuming ${path} after epoch ${state.epoch} of ${settings.epochs}`);
  try {
    const result = await trainImageFolder({
      ...loopOptions(folder, { ...flags, batchSize: flags.batchSize ?? settings.batchSize }),
      model,
      epochs: flags.epochs ?? settings.epochs,
      lr: flags.lr ?? settings.lr,
      weightDecay: settings.weightDecay,
      resume: state,
      checkpoint: flags.checkpoint ?? path,
    });
    return await finish(model, result, flags);
  } catch (error) {
    model.dispose();
    throw error;
  }
}

/**
 * The paper's workflow on the folder from `dense`, a softmax model: trained on the folder for
 * --epochs first unless it was loaded with the folder's classes (and image size), then stage 1
 * and stage 2.
 */
async function sparsifinerWorkflow(folder: ImageFolder, dense: VisionTransformer, flags: TrainFolderFlags): Promise<number> {
  if (flags.checkpoint) {
    dense.dispose();
    throw new Error('--checkpoint is for single-stage runs; the Sparsifiner workflow runs three (train the dense model with --checkpoint first, then --from it)');
  }
  const started = performance.now();
  const loop = loopOptions(folder, flags);
  // Loaded with the folder's classes at its own image size: already the dense model of this data.
  const trained = flags.from !== undefined && !dense.loadReport.initialised.includes('head.weight') && dense.loadReport.resized.length === 0;
  let denseAccuracy: number;
  if (trained) {
    denseAccuracy = await imageAccuracy(dense, folder.val);
    console.log(`-- dense softmax model: loaded with the folder's ${folder.classes.length} classes, held-out accuracy ${accuracyText(denseAccuracy)} (not trained further)`);
  } else {
    console.log('-- dense softmax model');
    denseAccuracy = (await trainImageFolder({ ...loop, model: dense, epochs: flags.epochs ?? DEFAULT_EPOCHS, lr: learningRate(flags), seed: flags.seed })).valAccuracy;
  }
  const onFolder: TrainingRun = async (run) => (await trainImageFolder({ ...loop, ...run })).valAccuracy;
  const result = await sparsify(dense, onFolder, {
    keepRate: flags.keepRate,
    coefficientKeep: flags.coefficientKeep,
    sharedBasis: flags.sharedBasis,
    reconstructionEpochs: flags.stage1Epochs,
    finetuneEpochs: flags.stage2Epochs,
    finetuneLr: flags.lr ?? (trained ? 5e-5 : 3e-4),
    seed: flags.seed,
    onStage: (stage) => console.log(`-- ${stage}`),
  });
  await result.sparse.save(flags.out);
  for (const line of sparsifySummary(result, denseAccuracy)) console.log(line);
  console.log(`${((performance.now() - started) / 1000).toFixed(1)} s in all; saved ${flags.out} (labels: the class folders)`);
  dense.dispose();
  result.sparse.dispose();
  return result.sparseAccuracy;
}
