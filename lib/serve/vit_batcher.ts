// model.batcher: a PredictBatcher (batcher.ts) over a VisionTransformer, for services.
import { attachMembers } from '../attach.js';
import { VisionTransformer, internals } from '../nn/vit.js';
import { PredictBatcher, type BatcherOptions } from './batcher.js';

declare module '../nn/vit.js' {
  interface VisionTransformer {
    /**
     * A batcher over this model for services: predict requests that arrive while a pass runs go
     * together in the next pass (up to options.maxBatch images), with the logits model.predict gives.
     */
    batcher(options?: BatcherOptions): PredictBatcher;
  }
}

const batching: Pick<VisionTransformer, 'batcher'> & ThisType<VisionTransformer> = {
  batcher(options: BatcherOptions = {}): PredictBatcher {
    internals(this).live();
    return new PredictBatcher(this, options);
  },
};
attachMembers(VisionTransformer.prototype, batching);
