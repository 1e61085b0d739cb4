/**
 * castling-vit: the public API's root, what a user of the models needs: tensors, the ViT with its
 * presets, images in, the optimizer, backend controls and the errors these throw. Low-level ops,
 * training workflows, the digits data set, ONNX, serving and safetensors files are subpath exports
 * (castling-vit/ops, /train, /digits, /onnx, /serve, /safetensors), each in lib/entry/.
 *
 * @packageDocumentation
 */
export { Tensor, shapeSize, MAX_RANK, type DType, type Device } from './tensor.js';
export { backendInfo, cudaAvailable, setThreads, setCpuPath, nativeMemoryBytes, releaseCachedMemory, synchronizeCuda, type BackendInfo, type CpuPath, type CudaStatus } from './backend.js';
export { VisionTransformer, type LoadReport, type LoadOptions, type CreateOptions, type TrainStepOptions, type TrainStepResult } from './vision_transformer.js';
export { AdamW, type AdamWOptions } from './train/adamw.js';
export { presets, resolveConfig, tokenCount, type VitConfig, type AttentionKind, type ConvForm, type CastlingForm, type PresetName, type WeightStorage } from './nn/config.js';
export { readImages, imagenetPreprocessing, defaultPreprocessing, ImagePixelLimitError, DEFAULT_MAX_INPUT_PIXELS, type ImagePreprocessing, type ImageSource, type RawImage, type ReadImagesOptions } from './io/images.js';
export { type ClassScore, type ClassifyOptions } from './io/classify.js';
export { type InferenceOptions, type NonFinitePolicy } from './nn/finite_outputs.js';
export { type AbortOptions } from './nn/abort.js';
// What VisionTransformer.load throws for a file that is not a valid safetensors file.
export { SafetensorsError } from './io/safetensors.js';
// Every error castling-vit throws carries one of these codes (docs/errors.md).
export {
  ErrorCodes,
  errorCode,
  InvalidArgTypeError,
  InvalidArgValueError,
  LimitExceededError,
  BadFileError,
  InvalidStateError,
  DisposedError,
  BusyError,
  AbortedError,
  UnsupportedError,
  NonFiniteOutputError,
  InternalError,
  type ErrorCode,
} from './errors.js';
