/**
 * castling-vit/onnx: the options of VisionTransformer.toOnnx and saveOnnx, and the opset they write.
 *
 * @packageDocumentation
 */
export { OPSET, type OnnxExportOptions } from '../io/onnx/export_vit.js';
