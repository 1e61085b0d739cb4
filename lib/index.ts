// castling-vit: the public API.
export { Tensor, shapeSize, MAX_RANK, type DType, type Device } from './tensor.js';
export {
  matmul,
  matmulSync,
  linear,
  linearSync,
  add,
  addSync,
  scale,
  scaleSync,
  gelu,
  geluSync,
  softmax,
  softmaxSync,
  layerNorm,
  layerNormSync,
  layerNormWithStats,
  type MatmulOptions,
  type LinearOptions,
  type LayerNormOptions,
  type LayerNormResult,
} from './ops.js';
export * as backward from './backward.js';
export * as attention from './attention.js';
export { PlanBuilder, CompiledPlan, Slot } from './plan.js';
export { backendInfo, cudaAvailable, setThreads, setCpuPath, nativeMemoryBytes, releaseCachedMemory, synchronizeCuda, type BackendInfo, type CpuPath, type CudaStatus } from './backend.js';
export { VisionTransformer, type LoadReport, type LoadOptions, type CreateOptions, type TrainStepOptions, type TrainStepResult } from './nn/vit.js';
export { AdamW, type AdamWOptions } from './train/adamw.js';
export { learningRateAt, castlingAt, EARLY_CASTLING, type LrSchedule, type CastlingSchedule, type AuxBranchState, type StepInfo, type TrainingLoopOptions } from './train/schedule.js';
export { presets, resolveConfig, tokenCount, type VitConfig, type AttentionKind, type ConvForm, type CastlingForm, type PresetName, type WeightStorage } from './nn/config.js';
export { readImages, imagenetPreprocessing, defaultPreprocessing, ImagePixelLimitError, DEFAULT_MAX_INPUT_PIXELS, type ImagePreprocessing, type ImageSource, type RawImage, type ReadImagesOptions } from './io/images.js';
export { type ClassScore, type ClassifyOptions } from './nn/classify.js';
export { type InferenceOptions, type NonFinitePolicy } from './nn/finite_outputs.js';
export { PredictBatcher, BatcherFullError, type BatcherOptions, type BatcherStats } from './nn/batcher.js';
export { type AbortOptions } from './nn/abort.js';
export { serveModel, type ServeOptions, type ModelServer } from './serve/server.js';
export { type DrainResult } from './serve/drain.js';
export { type OnnxExportOptions } from './io/onnx/export_vit.js';
export { readSafetensors, writeSafetensors, SafetensorsError, type SafetensorsContent, type StoredTensor, type ReadOptions, type WriteOptions, type TensorToWrite } from './io/safetensors.js';
export { loadDigits, DIGIT_SIZE, DIGIT_LABELS, digitsPreprocessing, type DigitSet } from './data/digits.js';
export { trainDigits, evaluateDigits, type DigitsOptions, type DigitsResult } from './train/digits.js';
export { listImageFolder, IMAGE_EXTENSIONS, type ImageFolder, type ImageList } from './data/image_folder.js';
export { trainImageFolder, imageAccuracy, type ImageFolderTrainingOptions, type ImageFolderTrainingResult } from './train/image_folder.js';
export { evaluateImages, type ImageEvaluation, type EvaluateOptions } from './train/evaluate.js';
export { loadTrainingCheckpoint, saveTrainingCheckpoint, type TrainingState, type CheckpointSettings, type CheckpointExtras } from './train/checkpoint.js';
export { sparsify, type SparsifyOptions, type SparsifyResult, type TrainingRun } from './train/sparsify.js';
export { sparsifyImageFolder, workflowOfCheckpoint, WorkflowStopped, type SparsifyFolderOptions, type SparsifyFolderResult, type WorkflowCheckpoint, type WorkflowSettings, type WorkflowStage } from './train/sparsify_folder.js';
export { checkRandomCrop, randomCropRegion, type RandomCropOptions, type CropRegion } from './train/random_crop.js';
export { attentionFlops, type AttentionFlopKind, type FlopOptions } from './flops.js';
