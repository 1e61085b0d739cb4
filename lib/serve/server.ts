// An HTTP endpoint over a model: POST an image's bytes, get its most probable classes (or its
// embedding) as JSON. Node's own http server, the model's batchers (requests that arrive during a
// pass go together in the next), and the request's abort (a client that hangs up) passed down, so
// that its image is not run for nobody. Decoding runs on libuv's pool, which the passes leave free.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

import { BatcherFullError, type PredictBatcher } from '../nn/batcher.js';
import type { Tensor } from '../tensor.js';
import { firstNonFinite } from '../finite.js';
import { topClasses } from '../nn/classify.js';
import type { VisionTransformer } from '../nn/vit.js';

export interface ServeOptions {
  /** Images per model pass at most (the batcher's maxBatch, default 16). */
  maxBatch?: number;
  /** Classes per answer unless the request asks (?top=k), default 5. */
  top?: number;
  /** The largest request body taken, in bytes (default 32 MiB); larger ones get 413. */
  maxBytes?: number;
  /**
   * The most images waiting for a pass (the batcher's maxWaiting, default 64); requests past it
   * get 503 with Retry-After, instead of an ever longer wait.
   */
  maxWaiting?: number;
  /** Answer NaN or infinite outputs as they are; by default they are a 500 saying so. */
  allowNonFinite?: boolean;
}

/** An answer that is the client's doing: its status and message. */
class RequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (response.headersSent || response.destroyed) return;
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
  response.end(text);
}

/** The request's body, up to maxBytes (else 413). */
async function readBody(request: IncomingMessage, maxBytes: number): Promise<Buffer> {
  const declared = Number(request.headers['content-length']);
  if (declared > maxBytes) throw new RequestError(413, `the body is ${declared} bytes, more than the ${maxBytes} this server takes`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of request) {
    size += (chunk as Buffer).length;
    if (size > maxBytes) throw new RequestError(413, `the body is more than the ${maxBytes} bytes this server takes`);
    chunks.push(chunk as Buffer);
  }
  if (size === 0) throw new RequestError(400, 'the body is empty: POST the bytes of an image file (JPEG, PNG, WebP, GIF, TIFF, AVIF or SVG)');
  return Buffer.concat(chunks);
}

/**
 * The request's target as a URL: origin-form ('/classify?top=3') as clients send it, or
 * absolute-form ('http://host/classify') as proxies do. Anything else (`//`, `//@`, a broken host)
 * is the client's error, 400, not an exception.
 */
function requestUrl(request: IncomingMessage): URL {
  const target = request.url ?? '/';
  try {
    if (target.startsWith('/')) {
      // Parsed as a path on a fixed origin: `//x` alone would read as a host named x.
      const url = new URL(`http://localhost${target}`);
      if (url.host === 'localhost') return url;
    } else if (/^https?:\/\//i.test(target)) {
      return new URL(target);
    }
  } catch {
    // falls through to the 400 below
  }
  throw new RequestError(400, `the request target ${JSON.stringify(target.slice(0, 200))} is not a path such as /classify`);
}

function topOf(url: URL, fallback: number, classes: number): number {
  const asked = url.searchParams.get('top');
  if (asked === null) return Math.min(fallback, classes);
  const top = Number(asked);
  if (!(Number.isInteger(top) && top >= 1)) throw new RequestError(400, `top is '${asked}', expected a positive integer`);
  return Math.min(top, classes);
}

/**
 * An http.Server (not listening yet: call listen) answering
 *   POST /classify   body: an image file's bytes; ?top=k   -> { classes: [{ index, label, probability }] }
 *   POST /embed      body: an image file's bytes            -> { embedding: number[] } (model.embed's)
 *   GET  /health     -> { model: { attention, imageSize, numClasses, width }, classify, embed } (batcher stats)
 * Errors are JSON { error } with 400 (not an image, bad top), 404, 405, 413 (too large), 503 (more
 * requests waiting than maxWaiting: try again later) or 500.
 */
export function serveModel(model: VisionTransformer, options: ServeOptions = {}): Server {
  const batching = { maxBatch: options.maxBatch, maxWaiting: options.maxWaiting ?? 64 };
  const batcher = model.batcher(batching);
  const embedder = model.batcher({ ...batching, output: 'embeddings' });
  const defaultTop = options.top ?? 5;
  const maxBytes = options.maxBytes ?? 32 * 1024 * 1024;
  const { attention, imageSize, numClasses, width } = model.config;

  /** The request's image, read with the model's preprocessing, and a signal of the client hanging up. */
  async function imageOf(request: IncomingMessage, response: ServerResponse): Promise<{ images: Tensor; hungUp: AbortSignal }> {
    const body = await readBody(request, maxBytes);
    // A client that hangs up before its answer: its request leaves the batcher's queue.
    const hungUp = new AbortController();
    response.once('close', () => {
      if (!response.writableFinished) hungUp.abort();
    });
    try {
      return { images: await model.readImages([body]), hungUp: hungUp.signal };
    } catch (error) {
      // ("readImages: could not read image 0 (N encoded bytes): ..." names the body as the request's)
      throw new RequestError(400, (error as Error).message.replace(/^readImages: could not read image 0 \((\d+) encoded bytes\)/, 'could not read the body ($1 bytes) as an image'));
    }
  }

  /** The image's pass through `through`, its result's values, the image and the result freed. */
  async function passOf(request: IncomingMessage, response: ServerResponse, through: PredictBatcher): Promise<Float32Array> {
    const { images, hungUp } = await imageOf(request, response);
    try {
      const out = await through.predict(images, { signal: hungUp });
      const values = out.toFloat32Array();
      out.dispose();
      if (!options.allowNonFinite && firstNonFinite(values) >= 0) throw new Error('the model produced non-finite values (NaN or infinity) for this image');
      return values;
    } finally {
      images.dispose();
    }
  }

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    try {
      const url = requestUrl(request);
      if (url.pathname === '/classify' || url.pathname === '/embed') {
        if (request.method !== 'POST') throw new RequestError(405, `${request.method} ${url.pathname}: POST the image's bytes`);
        if (url.pathname === '/classify') {
          const top = topOf(url, defaultTop, numClasses);
          const [classes] = topClasses(await passOf(request, response, batcher), numClasses, top, model.labels);
          send(response, 200, { classes });
        } else {
          send(response, 200, { embedding: Array.from(await passOf(request, response, embedder)) });
        }
      } else if (url.pathname === '/health') {
        if (request.method !== 'GET') throw new RequestError(405, `${request.method} /health: use GET`);
        send(response, 200, { model: { attention, imageSize, numClasses, width }, classify: batcher.stats, embed: embedder.stats });
      } else {
        throw new RequestError(404, `no ${url.pathname} here: POST /classify, POST /embed, GET /health`);
      }
    } catch (error) {
      if (error instanceof RequestError) send(response, error.status, { error: error.message });
      else if (error instanceof BatcherFullError) send(response, 503, { error: error.message }, { 'retry-after': '1' });
      else if ((error as Error).name !== 'AbortError') send(response, 500, { error: (error as Error).message });
    }
  }

  // handle() answers every error itself; the catch keeps a fault in that answer (a socket error
  // while writing, say) from becoming an unhandled rejection that ends the process.
  return createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) send(response, 500, { error: (error as Error).message });
      else response.destroy();
    });
  });
}
