// Stopping a server without dropping requests: drain() (the library's) and SIGTERM of `castling-vit
// serve` (the CLI's, in a child process). Requests that had arrived are answered, including ones
// whose headers were still coming; idle keep-alive connections close; a client that never finishes
// its request is closed at the deadline instead of holding the stop.
import type { ChildProcess } from 'node:child_process';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { VisionTransformer, presets } from '../lib/index.js';
import { serveModel } from '../lib/serve/server.js';
import { scratchDirectory } from './helpers.js';
import { drip, endlessHead, postHead, rawClient, startCli, waitFor } from './serve_clients.js';

const dir = scratchDirectory('castling-drain-');
const cli = join(import.meta.dirname, '..', 'dist', 'lib', 'cli.js');
const modelPath = join(dir, 'digits.safetensors');
let model: VisionTransformer;
let image: Buffer;
const children: ChildProcess[] = [];

beforeAll(async () => {
  model = VisionTransformer.create({ ...presets.digits, attention: 'softmax', seed: 4 });
  await model.save(modelPath);
  image = await sharp({ create: { width: 30, height: 28, channels: 3, background: { r: 30, g: 200, b: 90 } } }).png().toBuffer();
});

afterAll(() => {
  // A failed test may leave its server running.
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  model.dispose();
});

const request = (path = '/classify') => Buffer.concat([Buffer.from(postHead(path, { 'content-length': image.length })), image]);

describe('serveModel drain()', () => {
  it('answers a request whose headers were coming, closes idle keep-alive connections, and closes a dripping client at the deadline', async () => {
    const server = serveModel(model, { headersTimeoutMs: 60_000 });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    // An idle keep-alive connection: one request answered, the connection left open.
    const idle = await rawClient(port);
    await idle.write(request());
    await waitFor(() => idle.text.includes('"classes"'), 'the keep-alive answer');
    // Half a request's head, the rest to come after the drain began.
    const halfway = await rawClient(port);
    const whole = request();
    await halfway.write(whole.subarray(0, 30));
    // A client sending its head a byte at a time, far slower than the drain's deadline.
    const dripping = await rawClient(port);
    void drip(dripping, endlessHead, 1000);

    const started = Date.now();
    const drained = server.drain(3000);
    await halfway.write(whole.subarray(30));
    const answer = await halfway.closed;
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(answer).toMatch(/connection: close/i);
    expect(answer).toMatch(/"classes"/);
    await idle.closed; // closed by the drain, not by the client
    expect(await drained).toEqual({ forced: 1 });
    expect(Date.now() - started).toBeGreaterThanOrEqual(2900); // waited for the dripping client up to the deadline
    await dripping.closed; // closed by the server at the deadline
    await expect(rawClient(port)).rejects.toThrow(/ECONNREFUSED/);
  }, 20_000);

  it('resolves at once with nothing in flight, and once however often it is called', async () => {
    const server = serveModel(model);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const first = server.drain();
    expect(server.drain()).toBe(first);
    expect(await first).toEqual({ forced: 0 });
    expect(() => serveModel(model, { drainTimeoutMs: -1 })).toThrow(/drainTimeoutMs is -1, expected a positive integer/);
  }, 20_000);
});

describe('castling-vit serve: SIGTERM', () => {
  it('answers every request sent before the signal', async () => {
    const { child, port, exited, stderr } = await startCli(cli, [modelPath]);
    children.push(child);
    // Stopped, the server cannot take the connections as they come: all twenty wait in the
    // kernel's queue, their requests sent, when SIGTERM arrives (as under load).
    child.kill('SIGSTOP');
    const clients = await Promise.all(Array.from({ length: 20 }, () => rawClient(port)));
    await Promise.all(clients.map((c) => c.write(request())));
    child.kill('SIGTERM');
    child.kill('SIGCONT');
    const answers = await Promise.all(clients.map((c) => c.closed));
    answers.forEach((answer, i) => expect(answer, `request ${i}`).toMatch(/^HTTP\/1\.1 200 [^]*"classes"/));
    expect(await exited).toBe(0);
    expect(stderr()).toMatch(/SIGTERM: no new connections; answering the requests that arrived \(at most 10 s\)/);
  }, 20_000);

  it('closes a client that drips its request after --drain-timeout, and exits', async () => {
    const { child, port, exited, stderr } = await startCli(cli, [modelPath, '--drain-timeout', '1']);
    children.push(child);
    const dripping = await rawClient(port);
    void drip(dripping, endlessHead, 500);
    await waitFor(() => dripping.socket.bytesWritten > 3, 'the first bytes');
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    await dripping.closed;
    expect(stderr()).toMatch(/closed 1 connection\(s\) still open after 1 s/);
  }, 20_000);
});
