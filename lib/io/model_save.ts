// Saving a VisionTransformer as safetensors: its parameters, with its config, castled state,
// preprocessing and labels in the metadata (model_file.ts), and a checksum of the content.
// Attached to the class as model.save (and saveWith, for training checkpoints).
import { attachMembers } from '../attach.js';
import { VisionTransformer, internals } from '../nn/vit.js';
import { metadataOf } from './model_file.js';
import { writeSafetensors, type TensorToWrite } from './safetensors.js';
import { InvalidArgValueError } from '../errors.js';
import { fileDtype } from '../nn/weight_storage.js';

declare module '../nn/vit.js' {
  interface VisionTransformer {
    /** Writes the parameters and config as safetensors, atomically. */
    save(path: string): Promise<void>;

    /**
     * @internal save() with more tensors and metadata in the same file (a training checkpoint's
     * optimizer state): the file still loads as this model, the extra tensors listed as ignored.
     */
    saveWith(path: string, extraTensors: Map<string, { shape: number[]; data: Float32Array }>, extraMetadata: Record<string, string>): Promise<void>;
  }
}

const saving: Pick<VisionTransformer, 'save' | 'saveWith'> & ThisType<VisionTransformer> = {
  async save(path: string): Promise<void> {
    await this.saveWith(path, new Map(), {});
  },

  async saveWith(path: string, extraTensors: Map<string, { shape: number[]; data: Float32Array }>, extraMetadata: Record<string, string>): Promise<void> {
    const inner = internals(this);
    inner.live();
    for (const name of extraTensors.keys()) {
      if (inner.params.has(name)) throw new InvalidArgValueError(`save: the extra tensor '${name}' has a parameter's name`);
    }
    // The labels and preprocessing as they are now; the weights in the call's turn (after every
    // trainStep called before it).
    const metadata = { ...extraMetadata, ...metadataOf({ config: this.config, castled: inner.castledForGood, preprocessing: inner.imagePreprocessing, labels: inner.classLabels }) };
    return inner.queue.run('read', 'save', async () => {
      inner.live();
      const tensors = new Map<string, TensorToWrite>();
      // 16-bit weights are saved as they are held (exactly: each float32 here is a 16-bit value).
      for (const [name, t] of inner.params) tensors.set(name, { shape: t.shape, data: t.toFloat32Array(), storeAs: fileDtype(name, this.config) });
      for (const [name, t] of extraTensors) tensors.set(name, t);
      // A checksum of the content: load() tells a file damaged since from the model saved.
      await writeSafetensors(path, tensors, metadata, { checksum: true });
    });
  },
};
attachMembers(VisionTransformer.prototype, saving);
