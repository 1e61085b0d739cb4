/**
 * castling-vit/safetensors: reading and writing safetensors files of tensors, the format model
 * files use (VisionTransformer.load and save need none of this).
 *
 * @packageDocumentation
 */
export { readSafetensors, writeSafetensors, SafetensorsError, type SafetensorsContent, type StoredTensor, type ReadOptions, type WriteOptions, type TensorToWrite } from '../io/safetensors.js';
