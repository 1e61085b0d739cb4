// `castling-vit serve <model>`: the model behind HTTP (lib/serve/server.ts) until Ctrl-C or
// SIGTERM, which drain it: no new connections, the requests that had arrived answered, and after
// --drain-timeout the connections still open closed, so that a stop never waits on a slow client.
import type { AddressInfo } from 'node:net';

import type { VitConfig } from '../nn/config.js';
import { VisionTransformer } from '../vision_transformer.js';
import { serveModel } from '../serve/server.js';
import { readLabelsFile } from './format.js';
import { InvalidArgValueError } from '../errors.js';

export interface ServeFlags {
  port: number;
  host: string;
  maxBatch: number;
  maxWaiting: number;
  top: number;
  maxBytes: number;
  maxInFlightBytes?: number;
  maxInputPixels?: number;
  /** Timeouts in seconds (the library's options are in ms). */
  headersTimeout: number;
  requestTimeout: number;
  bodyTimeout: number;
  drainTimeout: number;
  /** The config of a file that has none, over what its tensors say (a timm checkpoint). */
  config?: Partial<VitConfig>;
  /** A text file of labels, one per line. */
  labels?: string;
  /** Load NaN or infinite weights (refused by default), and pass on non-finite outputs. */
  allowNonFinite?: boolean;
}

export async function serveCommand(modelPath: string, flags: ServeFlags): Promise<void> {
  if (flags.headersTimeout > flags.requestTimeout) throw new InvalidArgValueError(`--headers-timeout ${flags.headersTimeout} is more than --request-timeout ${flags.requestTimeout}: the headers are part of the request`);
  const labels = flags.labels ? readLabelsFile(flags.labels) : undefined;
  const model = await VisionTransformer.load(modelPath, { config: flags.config, labels, allowNonFinite: flags.allowNonFinite });
  // The first SIGINT or SIGTERM drains; a second one ends the process at once (Node's default,
  // both listeners being gone by then).
  const stopped = new Promise<string>((resolve) => {
    const stop = (signal: string) => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve(signal);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  const ms = (seconds: number) => Math.max(1, Math.round(seconds * 1000));
  const server = serveModel(model, {
    maxBatch: flags.maxBatch,
    maxWaiting: flags.maxWaiting,
    top: flags.top,
    maxBytes: flags.maxBytes,
    maxInFlightBytes: flags.maxInFlightBytes,
    maxInputPixels: flags.maxInputPixels,
    headersTimeoutMs: ms(flags.headersTimeout),
    requestTimeoutMs: ms(flags.requestTimeout),
    bodyTimeoutMs: ms(flags.bodyTimeout),
    drainTimeoutMs: ms(flags.drainTimeout),
    allowNonFinite: flags.allowNonFinite,
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(flags.port, flags.host, resolve);
  });
  const { address, port } = server.address() as AddressInfo;
  const { attention, imageSize, numClasses } = model.config;
  console.log(`castling-vit: serving ${modelPath} (${attention}, ${imageSize}² images, ${numClasses} classes) on http://${address.includes(':') ? `[${address}]` : address}:${port}: POST /classify or /embed with an image's bytes, GET /health`);
  if (model.loadReport.inferred) console.log(`castling-vit: ${modelPath} has no castling-vit config: ${model.loadReport.inferred}`);
  const signal = await stopped;
  console.error(`castling-vit: ${signal}: no new connections; answering the requests that arrived (at most ${flags.drainTimeout} s)`);
  const { forced } = await server.drain();
  if (forced > 0) console.error(`castling-vit: closed ${forced} connection(s) still open after ${flags.drainTimeout} s`);
  model.dispose();
}
