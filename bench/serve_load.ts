// `bench serve --load`: serveModel under a steady load on loopback, its server in a child process
// (serve_load_server.ts). For --seconds, --connections clients each POST a 640 x 480 JPEG to
// /classify, wait for the answer and send the next: requests per second, latency percentiles
// (p50, p90, p99) and the server's peak RSS. Then --uploads clients send 31 MB bodies at once
// (refused past the upload budget: the server's memory must not grow with them). After each
// phase, the server's RSS after a quiet pause and after a full garbage collection (an idle server
// collects nothing: memory freed but not collected yet shows in the first), against its baseline.
import { fork, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';

import type { AttentionKind } from '../lib/index.js';
import type { BenchRecord } from './common.js';
import { syntheticPhoto } from './images.js';
import type { LoadServerMessage, LoadServerReply } from './serve_load_server.js';

export interface LoadBenchOptions {
  models?: Array<'deitTiny' | 'deitSmall'>;
  attentions?: AttentionKind[];
  /** Seconds of steady load (default 15). */
  seconds?: number;
  /** Clients sending at once, each one request after another (default 16). */
  connections?: number;
  /** Clients uploading 31 MB bodies at once after the steady load (default 150; 0 skips). */
  uploads?: number;
  log?: (line: string) => void;
}

const MB = 1e6;
/** How long the server is left alone before its RSS is read again. */
const QUIET_MS = 3000;

/** One POST to 127.0.0.1: its status, once the answer has been read whole (or the connection ended). */
function post(port: number, body: Uint8Array, agent: Agent | false): Promise<number> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/classify?top=1', method: 'POST', agent, headers: { 'content-length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    // A server that refuses a large body may close before it has all been sent: status 0.
    req.on('error', () => resolve(0));
    req.end(body);
  });
}

/** Every client sends its next request once its answer is in, for `seconds`: latencies and statuses. */
async function steadyLoad(port: number, agent: Agent, photos: Buffer[], clients: number, seconds: number): Promise<{ latencies: number[]; statuses: Map<number, number> }> {
  const latencies: number[] = [];
  const statuses = new Map<number, number>();
  const end = performance.now() + seconds * 1000;
  await Promise.all(
    Array.from({ length: clients }, async (_, client) => {
      for (let i = client; performance.now() < end; i += clients) {
        const sent = performance.now();
        const status = await post(port, photos[i % photos.length]!, agent);
        latencies.push(performance.now() - sent);
        statuses.set(status, (statuses.get(status) ?? 0) + 1);
      }
    }),
  );
  return { latencies, statuses };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] ?? Number.NaN;
}

/** The server's child process, with a function to ask it something and wait for its reply. */
async function startServer(start: LoadServerMessage): Promise<{ child: ChildProcess; ask: (m: LoadServerMessage) => Promise<LoadServerReply>; port: number }> {
  const child = fork(new URL('./serve_load_server.js', import.meta.url), { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  // One question at a time: the reply to it, or the child's exit.
  let pending: { resolve: (reply: LoadServerReply) => void; reject: (error: Error) => void } | null = null;
  const settle = () => {
    const p = pending;
    pending = null;
    return p;
  };
  child.on('message', (reply: LoadServerReply) => settle()?.resolve(reply));
  child.on('exit', (code) => settle()?.reject(new Error(`the load server exited (${code})`)));
  const ask = (message: LoadServerMessage) =>
    new Promise<LoadServerReply>((resolve, reject) => {
      pending = { resolve, reject };
      child.send(message);
    });
  const { port } = (await ask(start)) as { port: number };
  return { child, ask, port };
}

export async function benchLoad(o: LoadBenchOptions = {}): Promise<BenchRecord[]> {
  const log = o.log ?? (() => {});
  const seconds = o.seconds ?? 15;
  const connections = o.connections ?? 16;
  const uploads = o.uploads ?? 150;
  const photos = await Promise.all(Array.from({ length: 8 }, (_, i) => syntheticPhoto(i)));
  const records: BenchRecord[] = [];
  for (const model of o.models ?? ['deitTiny']) {
    for (const attention of o.attentions ?? ['softmax']) {
      const { child, ask, port } = await startServer({ start: { model, attention } });
      const memory = async () => (await ask({ memory: true })) as { rssBytes: number; peakRssBytes: number };
      /** RSS after a quiet pause (no forced collection), and then after full garbage collections. */
      const quietRss = async () => {
        await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
        const settled = (await memory()).rssBytes;
        const collected = ((await ask({ memory: true, collect: true })) as { rssBytes: number }).rssBytes;
        return { settled, collected };
      };
      const agent = new Agent({ keepAlive: true, maxSockets: connections });
      // Warm-up: sharp loaded, and the model's inference plans recorded, one per batch size the
      // batcher makes (they stay: memory the server keeps, not memory the load holds).
      await steadyLoad(port, agent, photos, connections, Math.min(5, seconds / 3));
      const baseline = (await quietRss()).collected;

      const started = performance.now();
      const { latencies, statuses } = await steadyLoad(port, agent, photos, connections, seconds);
      const elapsed = (performance.now() - started) / 1000;
      agent.destroy();
      const afterLoad = await memory();
      const quiet = await quietRss();
      latencies.sort((a, b) => a - b);
      const load: BenchRecord = {
        model,
        kind: attention,
        pass: 'steady load',
        clients: connections,
        seconds: Number(elapsed.toFixed(1)),
        requests: latencies.length,
        non200: latencies.length - (statuses.get(200) ?? 0),
        requestsPerSecond: latencies.length / elapsed,
        latencyP50Ms: percentile(latencies, 0.5),
        latencyP90Ms: percentile(latencies, 0.9),
        latencyP99Ms: percentile(latencies, 0.99),
        baselineRssMB: baseline / MB,
        peakRssMB: afterLoad.peakRssBytes / MB,
        settledRssMB: quiet.settled / MB,
        collectedRssMB: quiet.collected / MB,
      };
      records.push(load);
      log(`${model} ${attention}: ${connections} clients for ${load.seconds} s: ${load.requests} requests (${load.non200} not 200), ${(load.requestsPerSecond as number).toFixed(1)}/s, latency p50 ${(load.latencyP50Ms as number).toFixed(1)} ms, p90 ${(load.latencyP90Ms as number).toFixed(1)}, p99 ${(load.latencyP99Ms as number).toFixed(1)}; RSS ${(baseline / MB).toFixed(0)} MB before, peak ${(afterLoad.peakRssBytes / MB).toFixed(0)}, ${(quiet.settled / MB).toFixed(0)} after ${QUIET_MS / 1000} s quiet, ${(quiet.collected / MB).toFixed(0)} after a garbage collection`);

      if (uploads > 0) {
        // Large uploads at once, each on its own connection; random bytes, not an image (400 once read).
        const big = new Uint8Array(31 * MB).map((_, i) => (i * 2654435761) >>> 24);
        const before = (await memory()).rssBytes;
        const answered = await Promise.all(Array.from({ length: uploads }, () => post(port, big, false)));
        const counts = (status: number) => answered.filter((s) => s === status).length;
        const peak = (await memory()).peakRssBytes;
        const after = await quietRss();
        const record: BenchRecord = {
          model,
          kind: attention,
          pass: `${uploads} uploads of 31 MB at once`,
          clients: uploads,
          requests: uploads,
          read400: counts(400),
          refused503: counts(503),
          resetOrClosed: counts(0),
          baselineRssMB: before / MB,
          peakRssMB: peak / MB,
          settledRssMB: after.settled / MB,
          collectedRssMB: after.collected / MB,
        };
        records.push(record);
        log(`${model} ${attention}: ${uploads} uploads of 31 MB at once: ${record.read400} read (400, not an image), ${record.refused503} refused 503, ${record.resetOrClosed} closed before an answer; RSS ${(before / MB).toFixed(0)} MB before, peak ${(peak / MB).toFixed(0)}, ${(after.settled / MB).toFixed(0)} after ${QUIET_MS / 1000} s quiet, ${(after.collected / MB).toFixed(0)} after a garbage collection`);
      }
      const { drained } = (await ask({ drain: true })) as { drained: number };
      if (drained > 0) log(`the drain closed ${drained} connection(s) at its deadline`);
      await new Promise((resolve) => (child.exitCode === null ? child.once('exit', resolve) : resolve(null)));
    }
  }
  return records;
}
