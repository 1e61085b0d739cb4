// Accuracy of a model on labelled image files: top-1, top-k and per class, as timm's validation
// reports them (images read as evaluation reads them: centre crops, the model's preprocessing).
import type { ImageList } from '../data/image_folder.js';
import '../io/model_images.js'; // model.classify
import type { VisionTransformer } from '../nn/vit.js';
import { InvalidArgValueError } from '../errors.js';

export interface ImageEvaluation {
  images: number;
  /** Share of the images whose class is the most probable one (NaN without images). */
  top1: number;
  /** Share whose class is among the `top` most probable. */
  topK: number;
  top: number;
  /** Per class index: its images and how many of them were top-1 correct. */
  perClass: Array<{ images: number; correct: number }>;
}

export interface EvaluateOptions {
  /** k of the top-k accuracy (default 5, at most the model's classes). */
  top?: number;
  /** Images decoded and run per predict (classify's batchSize, default 16). */
  batchSize?: number;
}

/** Classifies every file of `list` and compares with its label (a class index of the model). */
export async function evaluateImages(model: VisionTransformer, list: ImageList, options: EvaluateOptions = {}): Promise<ImageEvaluation> {
  const classes = model.config.numClasses;
  const top = Math.min(options.top ?? 5, classes);
  const perClass = Array.from({ length: classes }, () => ({ images: 0, correct: 0 }));
  list.labels.forEach((label, i) => {
    if (!(Number.isInteger(label) && label >= 0 && label < classes)) throw new InvalidArgValueError(`evaluateImages: the label of ${list.files[i]} is ${label}, expected a class from 0 to ${classes - 1}`);
  });
  if (list.files.length === 0) return { images: 0, top1: Number.NaN, topK: Number.NaN, top, perClass };
  // A diverged model (NaN logits) scores what it scores: a training run reports it and goes on.
  const results = await model.classify(list.files, { top, batchSize: options.batchSize, nonFinite: 'allow' });
  let inTop = 0;
  results.forEach((scores, i) => {
    const label = list.labels[i]!;
    perClass[label]!.images++;
    if (scores[0]!.index === label) perClass[label]!.correct++;
    if (scores.some((s) => s.index === label)) inTop++;
  });
  const correct = perClass.reduce((a, c) => a + c.correct, 0);
  return { images: list.files.length, top1: correct / list.files.length, topK: inTop / list.files.length, top, perClass };
}
