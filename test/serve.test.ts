// `castling-vit serve` and serveModel: POST /classify answers as model.classify does, concurrent
// requests go through the batcher, bad requests get their status and a message, and a client that
// hangs up does not disturb the others. The CLI serves until SIGTERM and then exits cleanly.
import { spawn, spawnSync } from 'node:child_process';
import { connect, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { VisionTransformer, presets, type Tensor } from '../lib/index.js';
import { PredictBatcher, type BatcherOptions } from '../lib/entry/serve.js';
import { serveModel } from '../lib/serve/server.js';
import { scratchDirectory } from './helpers.js';
import { startCli } from './serve_clients.js';

const dir = scratchDirectory('castling-serve-');
const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
let model: VisionTransformer;
let server: ReturnType<typeof serveModel>;
let base: string;
let images: Uint8Array<ArrayBuffer>[];

beforeAll(async () => {
  model = VisionTransformer.create({ ...presets.digits, attention: 'softmax', seed: 4 });
  model.labels = ['zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine'];
  images = await Promise.all(
    [0, 1, 2, 3, 4, 5, 6, 7].map((i) =>
      sharp({ create: { width: 30 + i, height: 28, channels: 3, background: { r: 30 * i, g: 255 - 30 * i, b: 90 } } })
        .png()
        .toBuffer()
        .then((png) => new Uint8Array(png)),
    ),
  );
  server = serveModel(model, { top: 3, maxBytes: 64 * 1024 });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  model.dispose();
});

const post = (body: Uint8Array<ArrayBuffer> | undefined, query = '') => fetch(`${base}/classify${query}`, { method: 'POST', body });

describe('serveModel', () => {
  it('answers POST /classify as model.classify does, concurrent requests batched', async () => {
    const want = await model.classify(images, { top: 3 });
    const before = (await (await fetch(`${base}/health`)).json()) as { classify: { passes: number } };
    const answers = await Promise.all(images.map((image) => post(image)));
    for (const [i, answer] of answers.entries()) {
      expect(answer.status).toBe(200);
      expect(answer.headers.get('content-type')).toMatch(/application\/json/);
      expect(await answer.json()).toEqual({ classes: want[i] });
    }
    const health = (await (await fetch(`${base}/health`)).json()) as { model: object; classify: { passes: number } };
    expect(health.model).toEqual({ attention: 'softmax', imageSize: 28, numClasses: 10, width: 96 });
    expect(health.classify.passes - before.classify.passes).toBeLessThan(images.length); // some requests shared a pass
    const one = (await (await post(images[0], '?top=1')).json()) as { classes: unknown[] };
    expect(one.classes).toEqual(want[0]!.slice(0, 1));
  });

  it('answers POST /embed with model.embed of the image, concurrent requests batched', async () => {
    const want = await model.embed(await model.readImages(images));
    const answers = await Promise.all(images.map((image) => fetch(`${base}/embed`, { method: 'POST', body: image })));
    const rows = await Promise.all(answers.map(async (a) => ((await a.json()) as { embedding: number[] }).embedding));
    const width = model.config.width;
    rows.forEach((row, i) => expect(Float32Array.from(row)).toEqual(want.toFloat32Array().subarray(i * width, (i + 1) * width)));
    const health = (await (await fetch(`${base}/health`)).json()) as { embed: { requests: number; passes: number } };
    expect(health.embed.requests).toBe(images.length);
    expect(health.embed.passes).toBeLessThan(images.length);
  });

  it('names what is wrong with a request, with its status', async () => {
    const cases: Array<[Promise<Response>, number, RegExp]> = [
      [post(new TextEncoder().encode('not an image')), 400, /could not read the body \(12 bytes\) as an image/],
      [post(undefined), 400, /the body is empty/],
      [post(images[0], '?top=0'), 400, /top is '0', expected a positive integer/],
      [post(new Uint8Array(100 * 1024)), 413, /more than the 65536 (bytes )?this server takes/],
      [fetch(`${base}/classify`), 405, /GET \/classify: POST the image's bytes/],
      [fetch(`${base}/health`, { method: 'DELETE' }), 405, /use GET/],
      [fetch(`${base}/other`), 404, /no \/other here: POST \/classify, POST \/embed, GET \/health/],
      [fetch(`${base}/embed`), 405, /GET \/embed: POST the image's bytes/],
    ];
    for (const [pending, status, message] of cases) {
      const response = await pending;
      expect(response.status).toBe(status);
      expect(((await response.json()) as { error: string }).error).toMatch(message);
    }
  });

  it('answers malformed request targets with 400 or 404 and goes on serving', async () => {
    // Sent raw: fetch would normalise these targets before they reach the server.
    const { port } = server.address() as AddressInfo;
    const raw = (target: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(port, '127.0.0.1', () => socket.end(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        let text = '';
        socket.on('data', (chunk) => (text += String(chunk)));
        socket.on('close', () => resolve(text));
        socket.on('error', reject);
      });
    for (const target of ['//', '/\\', '//@', 'http://[::1/', '//[::1', 'http://', 'ftp://x/classify']) {
      const answer = await raw(target);
      expect(answer, target).toMatch(/^HTTP\/1\.1 (400|404) /);
      expect(answer, target).toMatch(/"error":"(no .* here|the request target .* is not a path)/);
    }
    expect((await post(images[1])).status).toBe(200);
  });

  it('goes on answering when clients hang up mid-request', async () => {
    const hungUp = images.map((image) => {
      const controller = new AbortController();
      const pending = fetch(`${base}/classify`, { method: 'POST', body: image, signal: controller.signal }).catch((error: Error) => error.name);
      controller.abort();
      return pending;
    });
    expect(await Promise.all(hungUp)).toEqual(images.map(() => 'AbortError'));
    expect((await post(images[2])).status).toBe(200);
  });
});

describe('serveModel under more load than the model takes', () => {
  it('answers 503 with Retry-After past maxWaiting, and serves again once the queue drains', async () => {
    // A model whose passes end when the test says: the queue's state is the test's to set.
    const real = VisionTransformer.create({ ...presets.digits, attention: 'softmax', seed: 4 });
    let release!: () => void;
    let passes = 0;
    const slow = {
      config: real.config,
      labels: null,
      readImages: (sources: Uint8Array[]) => real.readImages(sources),
      predict: async (images: Tensor) => {
        if (passes++ === 0) await new Promise<void>((resolve) => (release = resolve));
        return real.predict(images);
      },
      embed: (images: Tensor) => real.embed(images),
      batcher: (options: BatcherOptions) => {
        const batcher = new PredictBatcher(slow, options);
        batchers.push(batcher);
        return batcher;
      },
    };
    const batchers: PredictBatcher[] = [];
    const busy = serveModel(slow as unknown as VisionTransformer, { maxWaiting: 1 });
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(busy.address() as AddressInfo).port}/classify`;
    try {
      const send = (image: Uint8Array<ArrayBuffer>) => fetch(url, { method: 'POST', body: image });
      const first = send(images[0]!); // holds the model
      while (passes === 0) await new Promise((resolve) => setTimeout(resolve, 5));
      const second = send(images[1]!); // waits: the one place in the queue
      while (batchers[0]!.stats.requests < 2) await new Promise((resolve) => setTimeout(resolve, 5));
      const refused = await send(images[2]!);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(((await refused.json()) as { error: string }).error).toMatch(/1 images wait for a pass already, the most this batcher holds is 1/);
      release();
      expect([(await first).status, (await second).status]).toEqual([200, 200]);
      expect((await send(images[3]!)).status).toBe(200);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
      real.dispose();
    }
  });
});

describe('castling-vit serve', () => {
  it('serves a saved model until SIGTERM, then exits 0', async () => {
    const path = join(dir, 'digits.safetensors');
    await model.save(path);
    const child = spawn(process.execPath, [cli, 'serve', path, '--port', '0', '--top', '2'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const port = await new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d;
        const m = /http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        if (m) resolve(m[1]!);
      });
      child.once('exit', (code) => reject(new Error(`serve exited ${code}: ${stderr}`)));
    });
    const answer = await fetch(`http://127.0.0.1:${port}/classify`, { method: 'POST', body: images[1] });
    expect(answer.status).toBe(200);
    expect(((await answer.json()) as { classes: unknown[] }).classes).toEqual((await model.classify([images[1]!], { top: 2 }))[0]);
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(stderr).toMatch(/SIGTERM: no new connections; answering the requests that arrived/);
  });

  it('passes its limits to the server, and refuses contradictory timeouts', async () => {
    const path = join(dir, 'digits-limits.safetensors');
    await model.save(path);
    const { child, port, exited } = await startCli(cli, [path, '--max-in-flight-bytes', '100000', '--max-input-pixels', '100']);
    try {
      const health = (await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { uploads: unknown };
      expect(health.uploads).toEqual({ bytes: 0, maxInFlightBytes: 100_000 });
      const answer = await fetch(`http://127.0.0.1:${port}/classify`, { method: 'POST', body: images[1] });
      expect(answer.status).toBe(413);
      expect(((await answer.json()) as { error: string }).error).toMatch(/more than the pixel limit of 100 \(maxInputPixels\)/);
    } finally {
      child.kill('SIGTERM');
      expect(await exited).toBe(0);
    }
    const refused = spawnSync(process.execPath, [cli, 'serve', path, '--headers-timeout', '20', '--request-timeout', '5'], { encoding: 'utf8' });
    expect(refused.status).toBe(1);
    expect(refused.stderr).toMatch(/--headers-timeout 20 is more than --request-timeout 5/);
  });
});
