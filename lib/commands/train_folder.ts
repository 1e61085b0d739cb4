// `castling-vit train folder <dir>`: train a model on a folder of images (one subfolder per
// class), from scratch or from saved weights (a timm softmax checkpoint becomes a castling model
// here: its convolution is freshly initialised, its head too when the classes differ).
import cliProgress from 'cli-progress';

import { listImageFolder } from '../data/image_folder.js';
import { presets, type AttentionKind, type VitConfig } from '../nn/config.js';
import { VisionTransformer } from '../nn/vit.js';
import { trainImageFolder } from '../train/image_folder.js';

export interface TrainFolderFlags {
  from?: string;
  /** The config: of a new model, or of a weights file that has none. */
  config?: VitConfig;
  /** Default: the file's, or castling for a new model. */
  attention?: AttentionKind;
  imageSize?: number;
  epochs: number;
  batchSize: number;
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

export async function trainFolderCommand(dir: string, flags: TrainFolderFlags): Promise<number> {
  const folder = listImageFolder(dir, { valFraction: flags.valFraction });
  const model = await startingModel(flags, folder.classes.length);
  if (model.config.attention === 'sparsifiner') {
    model.dispose();
    throw new Error('train folder trains softmax and castling models; a Sparsifiner needs its own workflow (train the softmax model, then stage 1 and stage 2: see README)');
  }
  model.labels = folder.classes;
  const { initialised: fresh, resized } = model.loadReport;
  const { width, depth, imageSize, attention } = model.config;
  console.log(
    `${folder.classes.length} classes (${folder.classes.join(', ')}): ${folder.train.files.length} images to train, ${folder.val.files.length} held out; ` +
      `${attention} ViT ${width} wide, ${depth} deep, ${imageSize}² images${flags.from ? `, from ${flags.from}${fresh.length ? ` (${fresh.length} tensors fresh)` : ''}${resized.length ? ` (resampled: ${resized.join(', ')})` : ''}` : ''}`,
  );
  const bar = flags.progress
    ? new cliProgress.SingleBar({ format: 'epoch {epoch} [{bar}] {value}/{total} steps | loss {loss}', clearOnComplete: true, hideCursor: true }, cliProgress.Presets.shades_classic)
    : null;
  const result = await trainImageFolder({
    folder,
    model,
    epochs: flags.epochs,
    batchSize: flags.batchSize,
    microBatch: flags.microBatch,
    // Pretrained weights move less: a tenth of the from-scratch rate unless asked.
    lr: flags.lr ?? (flags.from ? 5e-5 : 5e-4),
    randomCrop: flags.randomCrop && { scale: flags.cropScale },
    seed: flags.seed,
    onStep: ({ epoch, step, stepsPerEpoch, loss }) => {
      if (!bar) return;
      if (step === 1) bar.start(stepsPerEpoch, 0, { epoch, loss: loss.toFixed(3) });
      bar.update(step, { epoch, loss: loss.toFixed(3) });
      if (step === stepsPerEpoch) bar.stop();
    },
    onEpoch: ({ epoch, loss, valAccuracy, seconds }) =>
      console.log(`epoch ${String(epoch).padStart(2)}  loss ${loss.toFixed(4)}  held-out accuracy ${(100 * valAccuracy).toFixed(2)}%  (${seconds.toFixed(1)} s)`),
  });
  if (attention === 'castling') console.log(`castled: held-out accuracy ${(100 * result.accuracyBeforeSwitch).toFixed(2)}% before the switch, ${(100 * result.valAccuracy).toFixed(2)}% after`);
  await model.save(flags.out);
  console.log(`trained in ${result.trainSeconds.toFixed(1)} s; saved ${flags.out} (labels: the class folders)`);
  model.dispose();
  return result.valAccuracy;
}
