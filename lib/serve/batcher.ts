// Predict requests from many callers merged into batches: a service classifying one image per
// request runs a model pass per image, where a pass over several images costs much less per image
// (DeiT-Tiny at 224²: 38 ms for one image, 16.5 ms per image for eight). The batcher runs a
// request at once when the model is free; requests that arrive while a pass runs wait for it and
// then go together in one pass, up to maxBatch images. So a lone request pays no delay, and under
// load the batches fill by themselves (no timer to tune).
import { Tensor } from '../tensor.js';
import { abortReason, signalOf, type AbortOptions } from '../nn/abort.js';
import { imageBatch } from '../nn/model_inputs.js';
import { BusyError, InvalidArgTypeError, InvalidArgValueError } from '../errors.js';

/** What the batcher needs of a model (a VisionTransformer). */
export interface BatchedModel {
  readonly config: { readonly imageSize: number; readonly inChannels: number; readonly numClasses: number; readonly width: number };
  predict(images: Tensor): Promise<Tensor>;
  embed(images: Tensor): Promise<Tensor>;
}

export interface BatcherOptions {
  /** The most images per pass (default 16); a single request larger than this runs alone. */
  maxBatch?: number;
  /** What each request gets: 'logits' (model.predict's, the default) or 'embeddings' (model.embed's). */
  output?: 'logits' | 'embeddings';
  /**
   * The most images waiting for a pass (default: no limit). A request that would go past it is
   * refused at once with a BatcherFullError: under more load than the model can take, a queue
   * without end only makes every answer later and holds every waiting image in memory.
   */
  maxWaiting?: number;
}

/** A request refused because options.maxWaiting images wait already (an HTTP server's 503). */
export class BatcherFullError extends BusyError {
  constructor(waiting: number, maxWaiting: number) {
    super(`batcher.predict: ${waiting} images wait for a pass already, the most this batcher holds is ${maxWaiting}: try again later`);
    this.name = 'BatcherFullError';
  }
}

/** Counts for monitoring: how many passes ran and how many images they held. */
export interface BatcherStats {
  requests: number;
  images: number;
  passes: number;
}

interface Request {
  /**
   * The caller's tensor when the request runs at once (the pass holds it from then on), else its
   * images copied at the time of the request (a caller may reuse its tensor while it waits).
   */
  images: Tensor | Float32Array;
  count: number;
  resolve: (logits: Tensor) => void;
  reject: (error: unknown) => void;
  signal?: AbortSignal;
}

export class PredictBatcher {
  private readonly maxBatch: number;
  private readonly maxWaiting: number;
  private readonly output: 'logits' | 'embeddings';
  private waiting: Request[] = [];
  private running = false;
  private readonly counts: BatcherStats = { requests: 0, images: 0, passes: 0 };

  constructor(
    private readonly model: BatchedModel,
    options: BatcherOptions = {},
  ) {
    const maxBatch = options.maxBatch ?? 16;
    if (!(Number.isInteger(maxBatch) && maxBatch >= 1)) throw new InvalidArgValueError(`batcher: maxBatch is ${JSON.stringify(options.maxBatch)}, expected a positive integer`);
    this.maxBatch = maxBatch;
    const maxWaiting = options.maxWaiting ?? Number.POSITIVE_INFINITY;
    if (!(maxWaiting === Number.POSITIVE_INFINITY || (Number.isInteger(maxWaiting) && maxWaiting >= 1))) {
      throw new InvalidArgValueError(`batcher: maxWaiting is ${JSON.stringify(options.maxWaiting)}, expected a positive integer`);
    }
    this.maxWaiting = maxWaiting;
    const output = options.output ?? 'logits';
    if (output !== 'logits' && output !== 'embeddings') throw new InvalidArgTypeError(`batcher: output is ${JSON.stringify(options.output)}, expected 'logits' or 'embeddings'`);
    this.output = output;
  }

  /**
   * Logits [n, numClasses] for images [n, inChannels, imageSize, imageSize], as model.predict
   * gives them (embeddings [n, width] as model.embed, with output 'embeddings'), run together
   * with the other requests waiting when the model is free. (The same
   * values for softmax and Sparsifiner models; castling models split their attention sums by the
   * number of heads in a pass, so batches differ from single images by float rounding, ~1e-6.)
   * Aborting options.signal rejects the request at once: a waiting one leaves the queue, one
   * in a running pass is dropped from its results.
   */
  predict(images: Tensor, options: AbortOptions = {}): Promise<Tensor> {
    let request: Pick<Request, 'images' | 'count' | 'signal'>;
    try {
      const count = imageBatch(this.model.config, images, 'batcher.predict');
      const signal = signalOf(options, 'batcher.predict');
      if (signal?.aborted) throw abortReason(signal);
      const waitingImages = this.waiting.reduce((n, r) => n + r.count, 0);
      if (this.running && waitingImages + count > this.maxWaiting) throw new BatcherFullError(waitingImages, this.maxWaiting);
      request = { images: this.running ? images.toFloat32Array() : images, count, signal };
    } catch (error) {
      return Promise.reject(error);
    }
    this.counts.requests++;
    return new Promise<Tensor>((resolve, reject) => {
      const entry: Request = { ...request, resolve, reject };
      const signal = request.signal;
      if (signal) {
        const onAbort = () => {
          const at = this.waiting.indexOf(entry);
          if (at >= 0) this.waiting.splice(at, 1);
          reject(abortReason(signal));
        };
        signal.addEventListener('abort', onAbort, { once: true });
        const settle = <T>(done: (value: T) => void) => (value: T) => {
          signal.removeEventListener('abort', onAbort);
          done(value);
        };
        entry.resolve = settle(resolve);
        entry.reject = settle(reject);
      }
      this.waiting.push(entry);
      void this.drain();
    });
  }

  /** Requests, images and passes so far. */
  get stats(): Readonly<BatcherStats> {
    return { ...this.counts };
  }

  /** Runs the waiting requests, a batch at a time, until none is left. */
  private async drain(): Promise<void> {
    if (this.running) return;
    this.running = true;
    try {
      while (this.waiting.length > 0) await this.runBatch(this.takeBatch());
    } finally {
      this.running = false;
    }
  }

  /** The oldest waiting requests that fit in maxBatch images (at least one). */
  private takeBatch(): Request[] {
    let images = 0;
    let taken = 0;
    while (taken < this.waiting.length && (taken === 0 || images + this.waiting[taken]!.count <= this.maxBatch)) {
      images += this.waiting[taken]!.count;
      taken++;
    }
    return this.waiting.splice(0, taken);
  }

  private async runBatch(batch: Request[]): Promise<void> {
    try {
      const out = await this.pass(batch);
      if (batch.length === 1) {
        // The pass's own tensor (or nothing, to an aborted request: it was rejected already).
        if (batch[0]!.signal?.aborted) out.dispose();
        else batch[0]!.resolve(out);
        return;
      }
      const values = out.toFloat32Array();
      out.dispose();
      const columns = values.length / batch.reduce((n, r) => n + r.count, 0);
      let row = 0;
      for (const request of batch) {
        // (An aborted request was rejected already: its rows go nowhere.)
        if (!request.signal?.aborted) request.resolve(Tensor.fromArray(values.subarray(row * columns, (row + request.count) * columns), [request.count, columns]));
        row += request.count;
      }
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      // One request's images (a NaN, say) fail the whole pass: each again alone, so that the
      // error goes to its own caller and the others get their logits.
      for (const request of batch) if (!request.signal?.aborted) await this.runBatch([request]);
    }
  }

  /** One model pass over the batch's images: their logits (or embeddings), row after row. */
  private async pass(batch: Request[]): Promise<Tensor> {
    const { inChannels: c, imageSize: s } = this.model.config;
    const count = batch.reduce((n, r) => n + r.count, 0);
    const only = batch.length === 1 ? batch[0]!.images : null;
    let images: Tensor;
    if (only instanceof Tensor) {
      images = only;
    } else {
      const pixels = only ?? new Float32Array(count * c * s * s);
      if (!only) {
        let offset = 0;
        for (const request of batch) {
          // (A request that ran at once is alone in its batch: only copies get here.)
          const values = request.images instanceof Tensor ? request.images.toFloat32Array() : request.images;
          pixels.set(values, offset);
          offset += values.length;
        }
      }
      images = Tensor.fromArray(pixels, [count, c, s, s]);
    }
    try {
      const out = await (this.output === 'logits' ? this.model.predict(images) : this.model.embed(images));
      this.counts.passes++;
      this.counts.images += count;
      return out;
    } finally {
      if (images !== only) images.dispose();
    }
  }
}
