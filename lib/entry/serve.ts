/**
 * castling-vit/serve: one model for many callers: the request batcher and the HTTP service. Its
 * types build on Node's http module, so a TypeScript project that uses this subpath needs
 * `@types/node` (an optional peer dependency of the package).
 *
 * @packageDocumentation
 */
export { PredictBatcher, BatcherFullError, type BatcherOptions, type BatcherStats } from '../serve/batcher.js';
export { serveModel, type ServeOptions, type ModelServer } from '../serve/server.js';
export { type DrainResult } from '../serve/drain.js';
