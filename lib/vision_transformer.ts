// The whole VisionTransformer, as the package presents it: the model (nn/vit.ts: config,
// parameters, inference, gradients) with the members each layer above it defines on the class
// (attach.ts): load and save with the file formats, ONNX export, image files and classify,
// trainStep with the training workflows, batcher with the service. Importing this file is what
// gives a VisionTransformer all of them.
import './io/model_load.js';
import './io/model_save.js';
import './io/model_images.js';
import './io/onnx/vit_methods.js';
import './train/train_step.js';
import './serve/vit_batcher.js';

export { VisionTransformer, type LoadReport, type CreateOptions } from './nn/vit.js';
export type { LoadOptions } from './io/model_load.js';
export type { TrainStepOptions, TrainStepResult } from './train/train_step.js';
