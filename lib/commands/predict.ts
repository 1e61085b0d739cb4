// `castling-vit predict <model> <images or folders...>`: each image's most probable classes, as a
// table or JSON, with the model's own preprocessing and labels (or labels from a file).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { basename, join, sep } from 'node:path';

import { IMAGE_EXTENSIONS, isImageFileName } from '../data/image_folder.js';

import type { VitConfig } from '../nn/config.js';
import { VisionTransformer } from '../vision_transformer.js';
import { readLabelsFile } from './format.js';
import { InvalidArgValueError } from '../errors.js';

export interface PredictFlags {
  top: number;
  batchSize: number;
  json?: boolean;
  /** The config of a file that has none (a timm checkpoint). */
  config?: Partial<VitConfig>;
  /** A text file of labels, one per line. */
  labels?: string;
  /** Load NaN or infinite weights (refused by default), and pass on non-finite outputs. */
  allowNonFinite?: boolean;
}

/** The image files named: files as given, folders as the image files under them (sorted, recursively). */
export function imageFiles(paths: string[]): string[] {
  return paths.flatMap((path) => {
    if (!existsSync(path) || !statSync(path).isDirectory()) return [path]; // a missing file is readImages' error to name
    return readdirSync(path, { recursive: true, encoding: 'utf8' })
      .filter((name) => isImageFileName(basename(name)) && !name.split(sep).some((part) => part.startsWith('.')))
      .sort()
      .map((name) => join(path, name));
  });
}

export async function predictCommand(modelPath: string, paths: string[], flags: PredictFlags): Promise<void> {
  const images = imageFiles(paths);
  if (images.length === 0) throw new InvalidArgValueError(`no image files in ${paths.join(', ')} (expected files ending in ${IMAGE_EXTENSIONS.join(', ')})`);
  const labels = flags.labels ? readLabelsFile(flags.labels) : undefined;
  const model = await VisionTransformer.load(modelPath, { config: flags.config, labels, allowNonFinite: flags.allowNonFinite });
  try {
    const results = await model.classify(images, { top: flags.top, batchSize: flags.batchSize, nonFinite: flags.allowNonFinite ? 'allow' : 'refuse' });
    if (flags.json) return console.log(JSON.stringify(images.map((image, i) => ({ image, classes: results[i] })), null, 2));
    const width = Math.max(...images.map((i) => i.length));
    images.forEach((image, i) => {
      const classes = results[i]!.map((c) => `${c.label} ${(100 * c.probability).toFixed(1).padStart(5)}%`);
      console.log(`${image.padEnd(width)}  ${classes.join('   ')}`);
    });
  } finally {
    model.dispose();
  }
}
