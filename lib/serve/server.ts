// An HTTP endpoint over a model: POST an image's bytes, get its most probable classes (or its
// embedding) as JSON. Node's own http server, the model's batchers (requests that arrive during a
// pass go together in the next), and the request's abort (a client that hangs up) passed down, so
// that its image is not run for nobody. Decoding runs on libuv's pool, which the passes leave free.
// What a client may cost is bounded: the bytes all uploads hold (byte_budget.ts, body.ts), the time
// a slow client may take (Node's timeouts, body.ts), the pixels an image may declare; drain.ts
// stops the server without dropping the requests that had arrived.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

import { firstNonFinite } from '../finite.js';
import { DEFAULT_MAX_INPUT_PIXELS } from '../io/images.js';
import type { PredictBatcher } from './batcher.js';
import type { Tensor } from '../tensor.js';
import { topClasses } from '../io/classify.js';
import '../io/model_images.js'; // model.readImages
import type { VisionTransformer } from '../nn/vit.js';
import './vit_batcher.js'; // model.batcher
import { readBody } from './body.js';
import { ByteBudget, type BudgetShare } from './byte_budget.js';
import { drainerFor, type DrainResult } from './drain.js';
import { answerOf } from './error_status.js';
import { RequestError } from './request_error.js';
import { errorCode, InvalidArgValueError, NonFiniteOutputError } from '../errors.js';

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
  /**
   * The bytes all request bodies being read or answered may hold together (default 4 x maxBytes).
   * A request whose declared length does not fit gets 503 with Retry-After before its body is
   * read; one without a declared length, once its body grows past what is left.
   */
  maxInFlightBytes?: number;
  /** The most pixels of an uploaded image (default (32 x imageSize)², at most 16383²); larger ones get 413 from their header. */
  maxInputPixels?: number;
  /** Time for a request's headers to arrive, in ms (default 10 000); then 408. */
  headersTimeoutMs?: number;
  /** Time for a whole request, headers and body, to arrive, in ms (default 120 000); then 408. */
  requestTimeoutMs?: number;
  /** The longest pause between two pieces of a body, in ms (default 10 000); then 408. */
  bodyTimeoutMs?: number;
  /** How long drain() waits for the requests in flight, in ms (default 10 000). */
  drainTimeoutMs?: number;
  /** Answer NaN or infinite outputs as they are; by default they are a 500 saying so. */
  allowNonFinite?: boolean;
}

/** An http.Server (not listening yet: call listen) that can be stopped without dropping requests. */
export interface ModelServer extends Server {
  /**
   * Stops the server: no new connections; the requests that had arrived are answered (their
   * connections closing after the answer), idle keep-alive connections closed; after timeoutMs
   * (default options.drainTimeoutMs) the remaining connections are closed unanswered. Resolves
   * once every connection has ended, with the number closed at the deadline.
   */
  drain(timeoutMs?: number): Promise<DrainResult>;
}

const MiB = 1024 * 1024;

/**
 * How long the rest of a body refused before it was read whole is read and dropped (holding no
 * memory) before its connection is closed. Closing at once would reset the connection while the
 * client still sends, and a reset can reach the client before the answer does: it would see the
 * connection fail instead of its 503 and Retry-After.
 */
const LINGER_MS = 2000;

/** After an answer to an unfinished request: Node reads and drops the rest; closed if it goes on too long. */
function lingerThenClose(request: IncomingMessage): void {
  const timer = setTimeout(() => request.socket.destroy(), LINGER_MS);
  const done = () => clearTimeout(timer);
  request.once('end', done);
  request.once('close', done);
}

/** The options that are counts, sizes or times. */
type NumericOption = { [K in keyof ServeOptions]-?: ServeOptions[K] extends number | undefined ? K : never }[keyof ServeOptions];

/** Options of serveModel checked, with their defaults for `imageSize`. */
function settings(options: ServeOptions, imageSize: number) {
  const positive = (name: NumericOption, fallback: number): number => {
    const value = options[name] ?? fallback;
    if (!(Number.isSafeInteger(value) && value >= 1)) throw new InvalidArgValueError(`serveModel: ${name} is ${JSON.stringify(options[name])}, expected a positive integer`);
    return value;
  };
  const maxBytes = positive('maxBytes', 32 * MiB);
  const headersTimeoutMs = positive('headersTimeoutMs', 10_000);
  const requestTimeoutMs = positive('requestTimeoutMs', 120_000);
  if (headersTimeoutMs > requestTimeoutMs) throw new InvalidArgValueError(`serveModel: headersTimeoutMs (${headersTimeoutMs}) is more than requestTimeoutMs (${requestTimeoutMs}): the headers are part of the request`);
  // A side 32 times the input's keeps photos of any camera for a 224² model, and refuses a
  // 16383² PNG for a 28² one before it costs seconds of decoding.
  const maxInputPixels = positive('maxInputPixels', Math.min(DEFAULT_MAX_INPUT_PIXELS, (32 * imageSize) ** 2));
  return {
    top: positive('top', 5),
    maxBytes,
    maxWaiting: positive('maxWaiting', 64),
    maxInFlightBytes: positive('maxInFlightBytes', 4 * maxBytes),
    maxInputPixels,
    headersTimeoutMs,
    requestTimeoutMs,
    bodyTimeoutMs: positive('bodyTimeoutMs', 10_000),
    drainTimeoutMs: positive('drainTimeoutMs', 10_000),
  };
}

function send(response: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (response.headersSent || response.destroyed) return;
  const text = JSON.stringify(body);
  response.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)), ...headers });
  response.end(text);
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
  if (!(Number.isInteger(top) && top >= 1)) throw new InvalidArgValueError(`top is '${asked}', expected a positive integer`);
  return Math.min(top, classes);
}

/**
 * An http.Server (not listening yet: call listen) answering
 * ```text
 *   POST /classify   body: an image file's bytes; ?top=k   -> { classes: [{ index, label, probability }] }
 *   POST /embed      body: an image file's bytes            -> { embedding: number[] } (model.embed's)
 *   GET  /health     -> { model: { attention, imageSize, numClasses, width }, classify, embed (batcher stats),
 *                         uploads: { bytes, maxInFlightBytes } }
 * ```
 * Errors are JSON `{ error, code }` (code: the error's ERR_CASTLING_ code, docs/errors.md, where it
 * has one) with 400 (not an image, bad top), 404, 405, 408 (headers or body too slow), 413 (body
 * or image too large), 503 (more images waiting than maxWaiting, or the upload budget spent: try
 * again later, Retry-After: 1) or 500; error_status.ts maps codes to statuses. Its drain() stops it
 * (SIGTERM's job).
 */
export function serveModel(model: VisionTransformer, options: ServeOptions = {}): ModelServer {
  const { attention, imageSize, numClasses, width } = model.config;
  const o = settings(options, imageSize);
  const batching = { maxBatch: options.maxBatch, maxWaiting: o.maxWaiting };
  const batcher = model.batcher(batching);
  const embedder = model.batcher({ ...batching, output: 'embeddings' });
  const uploads = new ByteBudget(o.maxInFlightBytes);

  /** The request's image, read with the model's preprocessing, and a signal of the client hanging up. */
  async function imageOf(request: IncomingMessage, response: ServerResponse, share: BudgetShare): Promise<{ images: Tensor; hungUp: AbortSignal }> {
    const body = await readBody(request, { maxBytes: o.maxBytes, share, budgetBytes: o.maxInFlightBytes, idleTimeoutMs: o.bodyTimeoutMs });
    // A client that hangs up before its answer: its request leaves the batcher's queue.
    const hungUp = new AbortController();
    response.once('close', () => {
      if (!response.writableFinished) hungUp.abort();
    });
    try {
      return { images: await model.readImages([body], { maxInputPixels: o.maxInputPixels }), hungUp: hungUp.signal };
    } catch (error) {
      // ("readImages: could not read image 0 (N encoded bytes): ..." names the body as the request's)
      const message = (error as Error).message.replace(/^readImages: could not read image 0 \((\d+) encoded bytes\)/, 'could not read the body ($1 bytes) as an image');
      const answer = answerOf(error, 400) ?? { status: 400, headers: {} };
      throw new RequestError(answer.status, message, answer.headers, errorCode(error));
    }
  }

  /** The image's pass through `through`, its result's values, the image and the result freed. */
  async function passOf(request: IncomingMessage, response: ServerResponse, share: BudgetShare, through: PredictBatcher): Promise<Float32Array> {
    const { images, hungUp } = await imageOf(request, response, share);
    try {
      const out = await through.predict(images, { signal: hungUp });
      const values = out.toFloat32Array();
      out.dispose();
      if (!options.allowNonFinite && firstNonFinite(values) >= 0) throw new NonFiniteOutputError('the model produced non-finite values (NaN or infinity) for this image');
      return values;
    } finally {
      images.dispose();
    }
  }

  async function handle(request: IncomingMessage, response: ServerResponse, share: BudgetShare): Promise<void> {
    try {
      const url = requestUrl(request);
      if (url.pathname === '/classify' || url.pathname === '/embed') {
        if (request.method !== 'POST') throw new RequestError(405, `${request.method} ${url.pathname}: POST the image's bytes`);
        if (url.pathname === '/classify') {
          const top = topOf(url, o.top, numClasses);
          const [classes] = topClasses(await passOf(request, response, share, batcher), numClasses, top, model.labels);
          send(response, 200, { classes });
        } else {
          send(response, 200, { embedding: Array.from(await passOf(request, response, share, embedder)) });
        }
      } else if (url.pathname === '/health') {
        if (request.method !== 'GET') throw new RequestError(405, `${request.method} /health: use GET`);
        send(response, 200, { model: { attention, imageSize, numClasses, width }, classify: batcher.stats, embed: embedder.stats, uploads: { bytes: uploads.bytes, maxInFlightBytes: o.maxInFlightBytes } });
      } else {
        throw new RequestError(404, `no ${url.pathname} here: POST /classify, POST /embed, GET /health`);
      }
    } catch (error) {
      if (!request.complete) lingerThenClose(request);
      // (An aborted pass has no answer: its client has gone.)
      const answer = error instanceof RequestError ? { status: error.status, headers: error.headers } : answerOf(error);
      const code = errorCode(error);
      if (answer) send(response, answer.status, { error: (error as Error).message, ...(code === undefined ? {} : { code }) }, answer.headers);
    }
  }

  // Node's own timeouts for slow headers and slow requests (answered 408), checked often enough
  // for the shortest of them; a stalled body has bodyTimeoutMs (body.ts).
  const checkEveryMs = Math.max(10, Math.min(1000, Math.floor(Math.min(o.headersTimeoutMs, o.requestTimeoutMs) / 4)));
  const server = createServer({ headersTimeout: o.headersTimeoutMs, requestTimeout: o.requestTimeoutMs, connectionsCheckingInterval: checkEveryMs }, (request, response) => {
    drainer.admit(response);
    // The bytes a request took from the upload budget go back when it ends, however it ends
    // (answered, failed, or its client gone).
    const share = uploads.share();
    response.once('close', () => share.release());
    // handle() answers every error itself; the catch keeps a fault in that answer (a socket error
    // while writing, say) from becoming an unhandled rejection that ends the process.
    handle(request, response, share).catch((error: unknown) => {
      if (!response.headersSent) send(response, 500, { error: (error as Error).message });
      else response.destroy();
    });
  });
  // A client that sends `Expect: 100-continue` (curl does for large bodies) waits for 100 Continue
  // before its body: a request refused from its headers (413, 503: answered within the microtasks
  // that follow) gets its answer instead, and sends no body at all.
  server.on('checkContinue', (request: IncomingMessage, response: ServerResponse) => {
    server.emit('request', request, response);
    setImmediate(() => {
      if (!response.headersSent && !response.destroyed) response.writeContinue();
    });
  });
  const drainer = drainerFor(server);
  return Object.assign(server, { drain: (timeoutMs: number = o.drainTimeoutMs) => drainer.drain(timeoutMs) });
}
