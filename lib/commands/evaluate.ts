// `castling-vit evaluate <model> <folder>`: a model's accuracy on a folder of labelled images (one
// subfolder per class; with train/ and val/ subfolders, val/), classes matched to the model's
// labels by name (or by order when it has none).
import { listImageFolder, type ImageList } from '../data/image_folder.js';
import type { VitConfig } from '../nn/config.js';
import { VisionTransformer } from '../vision_transformer.js';
import { evaluateImages } from '../train/evaluate.js';
import { accuracyText } from './format.js';
import { InvalidArgValueError } from '../errors.js';

export interface EvaluateFlags {
  top: number;
  batchSize: number;
  json?: boolean;
  /** The config of a file that has none (a timm checkpoint). */
  config?: Partial<VitConfig>;
  /** Load NaN or infinite weights (refused by default). */
  allowNonFinite?: boolean;
}

/** The folder's images with the model's class indices: by label name, or by order without labels. */
function labelledImages(dir: string, model: VisionTransformer): { list: ImageList; classes: string[]; note: string | null } {
  const folder = listImageFolder(dir, { valFraction: 0 });
  const list = folder.val.files.length > 0 ? folder.val : folder.train; // val/ of a train/ + val/ folder, else everything
  const labels = model.labels;
  if (labels === null) {
    if (folder.classes.length !== model.config.numClasses) {
      throw new InvalidArgValueError(`${dir} has ${folder.classes.length} class folders, the model ${model.config.numClasses} classes and no labels to match them by name`);
    }
    return { list, classes: folder.classes, note: 'the model has no labels: class folders matched to classes in name order' };
  }
  const index = folder.classes.map((name) => labels.indexOf(name));
  const unknown = folder.classes.filter((_, i) => index[i]! < 0);
  if (unknown.length > 0) throw new InvalidArgValueError(`class folder(s) ${unknown.map((n) => `'${n}'`).join(', ')} of ${dir} are not among the model's labels (${labels.join(', ')})`);
  return { list: { files: list.files, labels: list.labels.map((l) => index[l]!) }, classes: [...labels], note: null };
}

export async function evaluateCommand(modelPath: string, dir: string, flags: EvaluateFlags): Promise<number> {
  const model = await VisionTransformer.load(modelPath, { config: flags.config, allowNonFinite: flags.allowNonFinite });
  try {
    const { list, classes, note } = labelledImages(dir, model);
    const result = await evaluateImages(model, list, { top: flags.top, batchSize: flags.batchSize });
    if (flags.json) {
      const perClass = result.perClass.map((c, i) => ({ class: classes[i], ...c })).filter((c) => c.images > 0);
      console.log(JSON.stringify({ model: modelPath, folder: dir, images: result.images, top1: result.top1, top: result.top, topK: result.topK, perClass }, null, 2));
      return result.top1;
    }
    if (note) console.log(note);
    console.log(`${result.images} images: top-1 ${accuracyText(result.top1)}, top-${result.top} ${accuracyText(result.topK)}`);
    const width = Math.max(...classes.map((c) => c.length));
    result.perClass.forEach((c, i) => {
      if (c.images > 0) console.log(`  ${classes[i]!.padEnd(width)}  ${accuracyText(c.correct / c.images).padStart(7)}  (${c.correct}/${c.images})`);
    });
    return result.top1;
  } finally {
    model.dispose();
  }
}
