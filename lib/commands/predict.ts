// `castling-vit predict <model> <images...>`: each image's most probable classes, as a table or
// JSON, with the model's own preprocessing and labels (or labels from a file).
import { readFileSync } from 'node:fs';

import type { VitConfig } from '../nn/config.js';
import { VisionTransformer } from '../nn/vit.js';

export interface PredictFlags {
  top: number;
  batchSize: number;
  json?: boolean;
  /** The config of a file that has none (a timm checkpoint). */
  config?: VitConfig;
  /** A text file of labels, one per line. */
  labels?: string;
}

export async function predictCommand(modelPath: string, images: string[], flags: PredictFlags): Promise<void> {
  const labels = flags.labels ? readFileSync(flags.labels, 'utf8').split(/\r?\n/).filter((l) => l.trim() !== '') : undefined;
  const model = await VisionTransformer.load(modelPath, { config: flags.config, labels });
  try {
    const results = await model.classify(images, { top: flags.top, batchSize: flags.batchSize });
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
