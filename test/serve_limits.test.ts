// serveModel's limits on what clients may cost it: the bytes all uploads hold at once (503 with
// Retry-After, released when a request ends however it ends), slow headers and slow or stalled
// bodies (408), and images whose header declares more pixels than the model's input warrants (413,
// refused before decoding).
import type { AddressInfo } from 'node:net';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { VisionTransformer, presets, readImages, ImagePixelLimitError } from '../lib/index.js';
import { serveModel, type ModelServer, type ServeOptions } from '../lib/serve/server.js';
import { drip, endlessHead, hugeBlackPng, postHead, rawClient, waitFor } from './serve_clients.js';

let model: VisionTransformer;
let image: Uint8Array<ArrayBuffer>;
const servers: ModelServer[] = [];

beforeAll(async () => {
  model = VisionTransformer.create({ ...presets.digits, attention: 'softmax', seed: 4 });
  image = new Uint8Array(await sharp({ create: { width: 30, height: 28, channels: 3, background: { r: 30, g: 200, b: 90 } } }).png().toBuffer());
});

afterAll(async () => {
  await Promise.all(servers.map((s) => s.drain(1000)));
  model.dispose();
});

async function start(options: ServeOptions): Promise<{ server: ModelServer; port: number; uploadBytes: () => Promise<number> }> {
  const server = serveModel(model, options);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const uploadBytes = async () => ((await (await fetch(`http://127.0.0.1:${port}/health`)).json()) as { uploads: { bytes: number } }).uploads.bytes;
  return { server, port, uploadBytes };
}

describe('serveModel: the bytes all uploads hold at once', () => {
  it('refuses a declared body that does not fit with 503 before reading it, and takes the bytes back when a client hangs up', async () => {
    const { port, uploadBytes } = await start({ maxBytes: 64 * 1024, maxInFlightBytes: 200_000 });
    // Five uploads of 60 000 bytes declared, their bodies held back: three fit, two are refused at once.
    const clients = await Promise.all([0, 1, 2, 3, 4].map(() => rawClient(port)));
    await Promise.all(clients.map((c) => c.write(postHead('/classify', { 'content-length': 60_000 }))));
    await waitFor(() => clients.filter((c) => c.text.startsWith('HTTP/1.1 503')).length === 2, 'two 503 answers');
    const refused = clients.filter((c) => c.text.startsWith('HTTP/1.1 503'));
    for (const c of refused) {
      expect(c.text).toMatch(/retry-after: 1/i);
      expect(c.text).toMatch(/a body of 60000 bytes does not fit in what is left of the 200000 bytes all uploads in progress may hold/);
    }
    expect(await uploadBytes()).toBe(180_000);
    // A refused client that sends its body anyway is not reset: the bytes are dropped, and the
    // connection takes its next request.
    const [persistent] = refused;
    await persistent!.write(Buffer.alloc(60_000));
    await persistent!.write(Buffer.concat([Buffer.from(postHead('/classify', { 'content-length': image.length })), image]));
    await waitFor(() => /^HTTP\/1\.1 503[^]*HTTP\/1\.1 200[^]*"classes"/.test(persistent!.text), 'the second answer on the connection');
    expect(persistent!.socket.destroyed).toBe(false);
    for (const c of clients) c.socket.destroy();
    await waitFor(async () => (await uploadBytes()) === 0, 'the hung-up uploads to give their bytes back');
    const answer = await fetch(`http://127.0.0.1:${port}/classify`, { method: 'POST', body: image });
    expect(answer.status).toBe(200);
    expect(await uploadBytes()).toBe(0);
  }, 20_000);

  it('stops reading a chunked body that grows past the budget and answers 503', async () => {
    const { port, uploadBytes } = await start({ maxBytes: 1024 * 1024, maxInFlightBytes: 100_000 });
    const holder = await rawClient(port);
    await holder.write(postHead('/classify', { 'content-length': 80_000 }));
    await waitFor(async () => (await uploadBytes()) === 80_000, 'the first upload to take its bytes');
    const chunked = await rawClient(port);
    await chunked.write(postHead('/classify', { 'transfer-encoding': 'chunked' }));
    const piece = Buffer.alloc(8000, 7);
    // 8000 bytes at a time: the third goes past the 20 000 left.
    for (let i = 0; i < 3 && !chunked.text; i++) await chunked.write(Buffer.concat([Buffer.from(`${piece.length.toString(16)}\r\n`), piece, Buffer.from('\r\n')]));
    await waitFor(() => chunked.text.length > 0, 'the answer');
    const answer = chunked.text;
    expect(answer).toMatch(/^HTTP\/1\.1 503/);
    expect(answer).toMatch(/the body grew past what is left of the 100000 bytes all uploads in progress may hold/);
    await waitFor(async () => (await uploadBytes()) === 80_000, 'the refused upload to give its bytes back');
    holder.socket.destroy();
    await waitFor(async () => (await uploadBytes()) === 0, 'the held upload to give its bytes back');
  }, 20_000);

  it('answers a client that expects 100-continue from its headers: refused, or told to send its body', async () => {
    const { port, uploadBytes } = await start({ maxBytes: 64 * 1024, maxInFlightBytes: 100_000 });
    const holder = await rawClient(port);
    await holder.write(postHead('/classify', { 'content-length': 60_000 }));
    await waitFor(async () => (await uploadBytes()) === 60_000, 'the first upload to take its bytes');
    const [late, tooLarge, welcome] = await Promise.all([rawClient(port), rawClient(port), rawClient(port)]);
    await late.write(postHead('/classify', { 'content-length': 60_000, expect: '100-continue' }));
    await tooLarge.write(postHead('/classify', { 'content-length': 1_000_000, expect: '100-continue' }));
    await welcome.write(postHead('/classify', { 'content-length': image.length, expect: '100-continue' }));
    await waitFor(() => late.text.length > 0 && tooLarge.text.length > 0 && welcome.text.length > 0, 'three answers');
    expect(late.text).toMatch(/^HTTP\/1\.1 503 /);
    expect(tooLarge.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(welcome.text).toMatch(/^HTTP\/1\.1 100 Continue\r\n\r\n$/);
    await welcome.write(image);
    await waitFor(() => welcome.text.includes('"classes"'), 'the answer after the body');
    for (const c of [holder, late, tooLarge, welcome]) c.socket.destroy();
  }, 20_000);

  it('gives the bytes of answered and failed requests back', async () => {
    const { port, uploadBytes } = await start({ maxBytes: 64 * 1024, maxInFlightBytes: 100_000 });
    const post = (body: Uint8Array<ArrayBuffer>) => fetch(`http://127.0.0.1:${port}/classify`, { method: 'POST', body });
    const statuses = await Promise.all([post(image), post(new TextEncoder().encode('not an image')), post(image)].map(async (r) => (await r).status));
    expect(statuses).toEqual([200, 400, 200]);
    expect(await uploadBytes()).toBe(0);
  }, 20_000);

  it('checks its options', () => {
    expect(() => serveModel(model, { maxInFlightBytes: 0 })).toThrow(/maxInFlightBytes is 0, expected a positive integer/);
    expect(() => serveModel(model, { headersTimeoutMs: 5000, requestTimeoutMs: 1000 })).toThrow(/headersTimeoutMs \(5000\) is more than requestTimeoutMs \(1000\)/);
  }, 20_000);
});

describe('serveModel: slow clients', () => {
  it('answers 408 to headers that arrive a byte at a time for longer than headersTimeoutMs', async () => {
    const { port } = await start({ headersTimeoutMs: 300 });
    const client = await rawClient(port);
    const answer = await drip(client, endlessHead, 40);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  }, 20_000);

  it('answers 408 to a body that stops for longer than bodyTimeoutMs', async () => {
    const { port, uploadBytes } = await start({ bodyTimeoutMs: 300 });
    const client = await rawClient(port);
    await client.write(postHead('/classify', { 'content-length': image.length }));
    await client.write(image.subarray(0, 10));
    await waitFor(() => client.text.length > 0, 'the answer');
    const answer = client.text;
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
    expect(answer).toMatch(/no bytes of the body came for 300 ms/);
    expect(await uploadBytes()).toBe(0);
  }, 20_000);

  it('answers 408 to a body sent a byte at a time for longer than requestTimeoutMs', async () => {
    const { port } = await start({ headersTimeoutMs: 500, requestTimeoutMs: 1000, bodyTimeoutMs: 10_000 });
    const client = await rawClient(port);
    await client.write(postHead('/classify', { 'content-length': image.length }));
    const answer = await drip(client, 'x'.repeat(image.length), 40);
    expect(answer).toMatch(/^HTTP\/1\.1 408/);
  }, 20_000);
});

describe('the pixel limit of uploaded images', () => {
  it('refuses a small PNG of a huge image with 413 naming the limit, from its header', async () => {
    const png = hugeBlackPng(16383);
    expect(png.length).toBeLessThan(300_000);
    const { port } = await start({});
    const answer = await fetch(`http://127.0.0.1:${port}/classify`, { method: 'POST', body: new Uint8Array(png) });
    expect(answer.status).toBe(413);
    // The default for a 28² model: (32 x 28)² pixels.
    expect(((await answer.json()) as { error: string }).error).toMatch(/the image is 16383 x 16383 = 268402689 pixels, more than the pixel limit of 802816 \(maxInputPixels\)/);
  }, 20_000);

  it('takes maxInputPixels from serveModel and readImages', async () => {
    const { port } = await start({ maxInputPixels: 29 * 28 });
    const answer = await fetch(`http://127.0.0.1:${port}/classify`, { method: 'POST', body: image });
    expect(answer.status).toBe(413);
    expect(((await answer.json()) as { error: string }).error).toMatch(/could not read the body \(\d+ bytes\) as an image: the image is 30 x 28 = 840 pixels, more than the pixel limit of 812/);
    const refused = readImages([image], { size: 28, maxInputPixels: 839 });
    await expect(refused).rejects.toThrow(ImagePixelLimitError);
    await expect(refused).rejects.toThrow(/readImages: could not read image 0 \(\d+ encoded bytes\): the image is 30 x 28 = 840 pixels, more than the pixel limit of 839/);
    for (const read of [readImages([image], { size: 28, maxInputPixels: 840 }), model.readImages([image], { maxInputPixels: 840 })]) {
      const tensor = await read;
      expect(tensor.shape.slice(2)).toEqual([28, 28]);
      tensor.dispose();
    }
    await expect(model.readImages([image], { maxInputPixels: 839 })).rejects.toThrow(/more than the pixel limit of 839/);
    await expect(readImages([image], { size: 28, maxInputPixels: 0 })).rejects.toThrow(/maxInputPixels is 0, expected a positive integer/);
  }, 20_000);
});
