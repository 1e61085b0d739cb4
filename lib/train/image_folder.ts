// Trains (or fine-tunes) a model on a folder of images, one subfolder per class: shuffled
// mini-batches read as timm trains (a random-resized crop, normalised with the model's
// preprocessing, flipped left-right at random), AdamW with warm-up and cosine decay, the Castling
// schedule for castling models, the held-out accuracy after every epoch (centre crops, as timm
// evaluates), and the switch at the end.
import type { ImageFolder, ImageList } from '../data/image_folder.js';
import { readImagesNumbered } from '../io/images.js';
import { SeededRandom } from '../nn/random.js';
import '../io/model_images.js'; // model.readImages
import type { VisionTransformer } from '../nn/vit.js';
import { Tensor } from '../tensor.js';
import { AdamW } from './adamw.js';
import { restoreTraining, saveTrainingCheckpoint, type CheckpointExtras, type CheckpointSettings, type TrainingState } from './checkpoint.js';
import { evaluateImages } from './evaluate.js';
import { checkRandomCrop, randomCropPlacement, type RandomCropOptions } from './random_crop.js';
import { EARLY_CASTLING, type TrainingLoopOptions } from './schedule.js';
import type { TrainStepOptions } from './train_step.js';
import { InvalidArgValueError } from '../errors.js';
import './train_step.js'; // model.trainStep

export interface ImageFolderTrainingOptions extends TrainingLoopOptions {
  folder: ImageFolder;
  /** The model to train: numClasses must match the folder's classes. */
  model: VisionTransformer;
  /** At most this many images per forward/backward pass (gradient accumulation). */
  microBatch?: number;
  /**
   * The random-resized crop of each training image (torchvision's RandomResizedCrop; default
   * scale [0.08, 1], ratio [3/4, 4/3]); false reads training images as evaluation does (centre crop).
   */
  randomCrop?: RandomCropOptions | false;
  /** Flip each training image left-right with probability 1/2 (default true). */
  flip?: boolean;
  /** Sparsifiner models: the training stage (see TrainStepOptions.stage). */
  stage?: TrainStepOptions['stage'];
  /** Distillation from a teacher model's logits (see TrainStepOptions.distillation). */
  distillation?: TrainStepOptions['distillation'];
  /**
   * Writes a training checkpoint here after every epoch (atomically: the model as model.save
   * writes it, with the optimizer's and the loop's state; loadTrainingCheckpoint reads it).
   */
  checkpoint?: string;
  /** More to keep in each checkpoint (the Sparsifiner workflow's stage and teacher). */
  checkpointExtras?: () => CheckpointExtras;
  /** Also write the checkpoint every this many steps within an epoch (default: at epoch ends only). */
  checkpointEvery?: number;
  /**
   * Asked after every step: true stops the run there (the checkpoint, if any, written first) and
   * the result says where (`stopped`). A Ctrl-C handler's flag, say.
   */
  shouldStop?: () => boolean;
  /**
   * Continues a run from its checkpoint's state (loadTrainingCheckpoint; `model` must be the one
   * loaded with it): the next epoch on, as the interrupted run would have gone. The run's
   * epochs, batch size, learning rate, weight decay and training images must be the checkpoint's.
   */
  resume?: TrainingState;
  /** Called after every epoch, with the held-out accuracy. */
  onEpoch?: (info: { epoch: number; loss: number; valAccuracy: number; seconds: number }) => void;
}

export interface ImageFolderTrainingResult {
  /** Held-out accuracy of the final model (after the switch for castling models); NaN without held-out images. */
  valAccuracy: number;
  accuracyBeforeSwitch: number;
  trainSeconds: number;
  /** Where a run that shouldStop ended early stopped (no switch, no final evaluation). */
  stopped?: { epoch: number; step: number };
}

/** Fraction of `list` the model classifies correctly (NaN for an empty list). */
export async function imageAccuracy(model: VisionTransformer, list: ImageList, batchSize = 32): Promise<number> {
  return (await evaluateImages(model, list, { top: 1, batchSize })).top1;
}

/** Mirrors the chosen images of a batch [B, C, S, S] left-right, in place. */
export function flipImages(data: Float32Array, shape: readonly number[], flip: boolean[]): void {
  const [, channels, rows, cols] = shape as [number, number, number, number];
  flip.forEach((yes, image) => {
    if (!yes) return;
    for (let r = 0; r < channels * rows; r++) data.subarray((image * channels * rows + r) * cols, (image * channels * rows + r + 1) * cols).reverse();
  });
}

/** A batch of training images: random-resized crops (each from its own draws of `rng`), or as evaluated. */
function readTrainingImages(model: VisionTransformer, files: string[], crop: Required<RandomCropOptions> | null, rng: SeededRandom): Promise<Tensor> {
  if (!crop) return model.readImages(files);
  const { imageSize, inChannels } = model.config;
  const places = files.map(() => randomCropPlacement(imageSize, rng, crop));
  return readImagesNumbered(files, { size: imageSize, channels: inChannels, preprocessing: model.preprocessing }, 0, (i) => places[i]!);
}

export async function trainImageFolder(o: ImageFolderTrainingOptions): Promise<ImageFolderTrainingResult> {
  const { folder, model } = o;
  if (model.config.numClasses !== folder.classes.length) {
    throw new InvalidArgValueError(`trainImageFolder: the model has ${model.config.numClasses} classes, the folder ${folder.classes.length} (${folder.classes.join(', ')})`);
  }
  const crop = o.randomCrop === false ? null : checkRandomCrop(o.randomCrop ?? {});
  const epochs = o.epochs ?? 10;
  const count = folder.train.files.length;
  const batchSize = Math.min(o.batchSize ?? 32, count);
  const stepsPerEpoch = Math.floor(count / batchSize);
  const optimizer = new AdamW(model.parameters(), {
    lr: o.lr ?? 5e-4,
    weightDecay: o.weightDecay ?? 0.05,
    warmupSteps: Math.min(stepsPerEpoch, Math.floor((stepsPerEpoch * epochs) / 10)),
    totalSteps: stepsPerEpoch * epochs,
    maxGradNorm: 1,
  });
  const labelSmoothing = o.labelSmoothing ?? 0.1;
  const flip = o.flip ?? true;
  const settings: CheckpointSettings = {
    epochs,
    batchSize,
    trainImages: count,
    lr: optimizer.options.lr,
    weightDecay: optimizer.options.weightDecay,
    labelSmoothing,
    augmentation: JSON.stringify({ crop, flip }),
  };
  if (o.checkpointEvery !== undefined && !(Number.isInteger(o.checkpointEvery) && o.checkpointEvery >= 1)) {
    throw new InvalidArgValueError(`trainImageFolder: checkpointEvery is ${o.checkpointEvery}, expected a positive number of steps`);
  }
  let rng = new SeededRandom((o.seed ?? 1) * 7 + 3);
  let order = Array.from({ length: count }, (_, i) => i);
  // Where to start: after a complete epoch, or within one (its order already shuffled).
  let firstEpoch = 1, firstStep = 0, resumedLossSum = 0;
  if (o.resume) {
    rng = restoreTraining(o.resume, optimizer, settings);
    order = [...o.resume.order];
    if (o.resume.step === undefined) {
      firstEpoch = o.resume.epoch + 1;
    } else {
      if (o.resume.step >= stepsPerEpoch) throw new InvalidArgValueError(`resume: the checkpoint is after step ${o.resume.step} of epoch ${o.resume.epoch}, which has ${stepsPerEpoch} steps`);
      firstEpoch = o.resume.epoch;
      firstStep = o.resume.step;
      resumedLossSum = o.resume.lossSum ?? 0;
    }
  }
  // The checkpoint after `epoch`, or within it after `within.step` steps.
  const writeCheckpoint = async (epoch: number, within?: { step: number; lossSum: number }) => {
    if (o.checkpoint) await saveTrainingCheckpoint(o.checkpoint, model, optimizer, { epoch, ...within, settings, random: rng, order }, o.checkpointExtras?.());
  };
  const started = performance.now();
  const stoppedAt = (epoch: number, step: number, valAccuracy: number): ImageFolderTrainingResult => {
    optimizer.dispose();
    return { valAccuracy, accuracyBeforeSwitch: valAccuracy, trainSeconds: (performance.now() - started) / 1000, stopped: { epoch, step } };
  };
  let valAccuracy = Number.NaN;
  for (let epoch = firstEpoch; epoch <= epochs; epoch++) {
    const epochStart = performance.now();
    const resumedHere = epoch === firstEpoch && firstStep > 0;
    if (!resumedHere) rng.shuffle(order);
    let lossSum = resumedHere ? resumedLossSum : 0;
    for (let step = resumedHere ? firstStep : 0; step < stepsPerEpoch; step++) {
      const picked = order.slice(step * batchSize, (step + 1) * batchSize);
      const read = await readTrainingImages(model, picked.map((i) => folder.train.files[i]!), crop, rng);
      let images = read;
      if (flip) {
        const data = read.toFloat32Array();
        flipImages(data, read.shape, picked.map(() => rng.next() < 0.5));
        images = Tensor.fromArray(data, read.shape);
        read.dispose();
      }
      const labels = picked.map((i) => folder.train.labels[i]!);
      const result = await model.trainStep(images, labels, optimizer, {
        labelSmoothing,
        castling: o.castling ?? EARLY_CASTLING,
        microBatch: o.microBatch,
        stage: o.stage,
        distillation: o.distillation,
      });
      images.dispose();
      lossSum += result.loss;
      o.onStep?.({ epoch, step: step + 1, stepsPerEpoch, loss: result.loss, tau: result.tau });
      if (step + 1 === stepsPerEpoch) break; // the epoch's end: its checkpoint below
      if (o.shouldStop?.()) {
        await writeCheckpoint(epoch, { step: step + 1, lossSum });
        return stoppedAt(epoch, step + 1, Number.NaN);
      }
      if (o.checkpointEvery && (step + 1) % o.checkpointEvery === 0) await writeCheckpoint(epoch, { step: step + 1, lossSum });
    }
    valAccuracy = await imageAccuracy(model, folder.val);
    await writeCheckpoint(epoch);
    o.onEpoch?.({ epoch, loss: lossSum / Math.max(1, stepsPerEpoch), valAccuracy, seconds: (performance.now() - epochStart) / 1000 });
    if (epoch < epochs && o.shouldStop?.()) return stoppedAt(epoch, stepsPerEpoch, valAccuracy);
  }
  if (firstEpoch > epochs) valAccuracy = await imageAccuracy(model, folder.val); // resumed after the last epoch
  optimizer.dispose(); // its moments: twice the parameters' memory
  const trainSeconds = (performance.now() - started) / 1000;
  const accuracyBeforeSwitch = valAccuracy;
  if (model.config.attention === 'castling' && !model.castled) {
    model.castle();
    valAccuracy = await imageAccuracy(model, folder.val);
  }
  return { valAccuracy, accuracyBeforeSwitch, trainSeconds };
}
