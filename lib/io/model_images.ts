// A VisionTransformer's image files: model.readImages (files to inputs by the model's
// preprocessing) and model.classify (files to each image's most probable classes).
import { attachMembers } from '../attach.js';
import { checkNonFinitePolicy } from '../nn/finite_outputs.js';
import { abortable, abortReason, signalOf } from '../nn/abort.js';
import { checkOptionNames } from '../nn/option_names.js';
import { VisionTransformer, internals } from '../nn/vit.js';
import type { Tensor } from '../tensor.js';
import { classifyImages, type ClassifyOptions, type ClassScore } from './classify.js';
import { readImages, type ImageSource, type ReadImagesOptions } from './images.js';

/** The names of classify's options (ClassifyOptions). */
const CLASSIFY_OPTIONS = ['top', 'batchSize', 'signal', 'nonFinite'] as const satisfies ReadonlyArray<keyof ClassifyOptions>;

declare module '../nn/vit.js' {
  interface VisionTransformer {
    /**
     * Image files, encoded bytes or raw pixels as a Tensor [images, inChannels, imageSize, imageSize]
     * for predict or trainStep, prepared by `model.preprocessing`. options.maxInputPixels refuses
     * larger images from their header (readImages' option; a server sets it from the input size).
     */
    readImages(sources: readonly ImageSource[], options?: Pick<ReadImagesOptions, 'maxInputPixels'>): Promise<Tensor>;

    /** Each image's most probable classes (readImages, then predict a chunk at a time). */
    classify(sources: readonly ImageSource[], options?: ClassifyOptions): Promise<ClassScore[][]>;
  }
}

const images: Pick<VisionTransformer, 'readImages' | 'classify'> & ThisType<VisionTransformer> = {
  readImages(sources: readonly ImageSource[], options: Pick<ReadImagesOptions, 'maxInputPixels'> = {}): Promise<Tensor> {
    const inner = internals(this);
    inner.live();
    const { imageSize, inChannels } = this.config;
    return readImages(sources, { size: imageSize, channels: inChannels, preprocessing: inner.imagePreprocessing, maxInputPixels: options?.maxInputPixels });
  },

  classify(sources: readonly ImageSource[], options: ClassifyOptions = {}): Promise<ClassScore[][]> {
    const inner = internals(this);
    inner.live();
    checkOptionNames(options, CLASSIFY_OPTIONS, 'classify');
    const signal = signalOf(options, 'classify');
    if (signal?.aborted) return Promise.reject(abortReason(signal));
    // One read for the whole list: every chunk is classified by the same weights.
    const nonFinite = options.nonFinite ?? 'refuse';
    checkNonFinitePolicy(nonFinite, 'classify');
    const predict = (images: Tensor) => inner.inferenceNow(images, inner.checkImages(images, 'predict'), 'logits', nonFinite);
    const classifier = { config: this.config, preprocessing: inner.imagePreprocessing, labels: inner.classLabels, predict };
    return abortable(inner.queue.run('read', 'classify', () => classifyImages(classifier, sources, options), signal), signal);
  },
};
attachMembers(VisionTransformer.prototype, images);
