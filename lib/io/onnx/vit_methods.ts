// ONNX export as methods of a VisionTransformer: model.toOnnx and model.saveOnnx (export_vit.ts
// writes the graph).
import { attachMembers } from '../../attach.js';
import { VisionTransformer, internals } from '../../nn/vit.js';
import { exportOnnx, writeOnnx, type OnnxExportOptions } from './export_vit.js';

declare module '../../nn/vit.js' {
  interface VisionTransformer {
    /**
     * The forward pass as ONNX (opset 17, the operators torch.onnx writes for a timm ViT), for other
     * runtimes: every attention kind (castling models once castled; a Sparsifiner as dense operators
     * under its predicted mask). The batch is a free dimension unless `options.batch` fixes it.
     * Image preprocessing is not part of the graph.
     */
    toOnnx(options?: OnnxExportOptions): Uint8Array;

    /** Writes toOnnx() to `path`, atomically (in its turn: after every trainStep called before it). */
    saveOnnx(path: string, options?: OnnxExportOptions): Promise<void>;
  }
}

const onnx: Pick<VisionTransformer, 'toOnnx' | 'saveOnnx'> & ThisType<VisionTransformer> = {
  toOnnx(options: OnnxExportOptions = {}): Uint8Array {
    const inner = internals(this);
    inner.live();
    inner.queue.requireNoUpdate('toOnnx()'); // it reads the weights now: a running trainStep would be half applied
    return exportOnnx(this, options);
  },

  async saveOnnx(path: string, options: OnnxExportOptions = {}): Promise<void> {
    const inner = internals(this);
    inner.live();
    return inner.queue.run('read', 'saveOnnx', async () => {
      inner.live();
      await writeOnnx(this, path, options);
    });
  },
};
attachMembers(VisionTransformer.prototype, onnx);
