// The server of `bench serve --load`, in a process of its own so that its memory is its own:
// serveModel over a fresh model on 127.0.0.1, answering its parent's questions over IPC: its
// memory now and at its peak, and the drain that ends it.
import type { AddressInfo } from 'node:net';

import { VisionTransformer, presets, type AttentionKind } from '../lib/index.js';
import { serveModel } from '../lib/entry/serve.js';

/** What the parent sends: the model to serve, then questions. */
export type LoadServerMessage = { start: { model: 'deitTiny' | 'deitSmall'; attention: AttentionKind } } | { memory: true; collect?: boolean } | { drain: true };

/** What this process answers. */
export type LoadServerReply = { port: number } | { rssBytes: number; peakRssBytes: number } | { drained: number };

const reply = (message: LoadServerReply) => process.send!(message);

process.on('message', async (message: LoadServerMessage) => {
  if ('start' in message) {
    const model = VisionTransformer.create({ ...presets[message.start.model], attention: message.start.attention, numClasses: 1000 });
    if (message.start.attention === 'castling') model.castle();
    const server = serveModel(model);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    process.on('message', async (question: LoadServerMessage) => {
      if ('memory' in question) {
        // collect: after full garbage collections (this process runs with --expose-gc), to tell
        // memory held from memory not collected yet: an idle server collects nothing. Three,
        // apart: one alone was seen to leave 31 MB request bodies held.
        if (question.collect) {
          for (let i = 0; i < 3; i++) {
            (globalThis as { gc?: () => void }).gc?.();
            await new Promise((resolve) => setTimeout(resolve, 100));
          }
        }
        // resourceUsage's maxRSS is in KiB: the most this process has held since it started.
        reply({ rssBytes: process.memoryUsage.rss(), peakRssBytes: process.resourceUsage().maxRSS * 1024 });
      } else if ('drain' in question) {
        const { forced } = await server.drain(5000);
        model.dispose();
        reply({ drained: forced });
        process.disconnect();
      }
    });
    reply({ port: (server.address() as AddressInfo).port });
  }
});
