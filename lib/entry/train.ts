/**
 * castling-vit/train: training beyond VisionTransformer.trainStep and AdamW (both in the root):
 * schedules, image folders, evaluation, resumable checkpoints, the Sparsifiner workflow and
 * random crops.
 *
 * @packageDocumentation
 */
export { learningRateAt, castlingAt, EARLY_CASTLING, type LrSchedule, type CastlingSchedule, type AuxBranchState, type StepInfo, type TrainingLoopOptions } from '../train/schedule.js';
export { listImageFolder, IMAGE_EXTENSIONS, type ImageFolder, type ImageList } from '../data/image_folder.js';
export { trainImageFolder, imageAccuracy, type ImageFolderTrainingOptions, type ImageFolderTrainingResult } from '../train/image_folder.js';
export { evaluateImages, type ImageEvaluation, type EvaluateOptions } from '../train/evaluate.js';
export { loadTrainingCheckpoint, saveTrainingCheckpoint, type TrainingState, type CheckpointSettings, type CheckpointExtras } from '../train/checkpoint.js';
export { sparsify, type SparsifyOptions, type SparsifyResult, type TrainingRun } from '../train/sparsify.js';
export { sparsifyImageFolder, workflowOfCheckpoint, WorkflowStopped, type SparsifyFolderOptions, type SparsifyFolderResult, type WorkflowCheckpoint, type WorkflowSettings, type WorkflowStage } from '../train/sparsify_folder.js';
export { checkRandomCrop, randomCropRegion, type RandomCropOptions, type CropRegion } from '../train/random_crop.js';
