// `castling-vit serve <model>`: the model behind HTTP (lib/serve/server.ts) until Ctrl-C or
// SIGTERM, which stop new connections and let the requests in flight finish.
import type { AddressInfo } from 'node:net';

import type { VitConfig } from '../nn/config.js';
import { VisionTransformer } from '../nn/vit.js';
import { serveModel } from '../serve/server.js';
import { readLabelsFile } from './format.js';

export interface ServeFlags {
  port: number;
  host: string;
  maxBatch: number;
  maxWaiting: number;
  top: number;
  /** The config of a file that has none, over what its tensors say (a timm checkpoint). */
  config?: Partial<VitConfig>;
  /** A text file of labels, one per line. */
  labels?: string;
  /** Load NaN or infinite weights (refused by default), and pass on non-finite outputs. */
  allowNonFinite?: boolean;
}

export async function serveCommand(modelPath: string, flags: ServeFlags): Promise<void> {
  const labels = flags.labels ? readLabelsFile(flags.labels) : undefined;
  const model = await VisionTransformer.load(modelPath, { config: flags.config, labels, allowNonFinite: flags.allowNonFinite });
  const server = serveModel(model, { maxBatch: flags.maxBatch, maxWaiting: flags.maxWaiting, top: flags.top, allowNonFinite: flags.allowNonFinite });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(flags.port, flags.host, resolve);
  });
  const { address, port } = server.address() as AddressInfo;
  const { attention, imageSize, numClasses } = model.config;
  console.log(`castling-vit: serving ${modelPath} (${attention}, ${imageSize}² images, ${numClasses} classes) on http://${address.includes(':') ? `[${address}]` : address}:${port}: POST /classify or /embed with an image's bytes, GET /health`);
  if (model.loadReport.inferred) console.log(`castling-vit: ${modelPath} has no castling-vit config: ${model.loadReport.inferred}`);
  await new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      console.error(`castling-vit: ${signal}: no new connections; finishing the requests in flight`);
      server.close(() => resolve());
      server.closeIdleConnections();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  model.dispose();
}
