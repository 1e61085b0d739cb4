// The stable codes of lib/errors.ts: each is produced here by a call that really fails (never by
// constructing the error), from lib/ and from the native addon, with the standard class a caller
// catches kept; lib/ throws no bare Error, TypeError or RangeError; docs/errors.md lists exactly
// the codes lib/errors.ts defines.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';
import { describe, expect, it } from 'vitest';

import { GraphBuilder } from '../lib/io/onnx/graph.js';
import { native } from '../lib/native.js';
import { answerOf } from '../lib/serve/error_status.js';
import {
  AdamW,
  ErrorCodes,
  ImagePixelLimitError,
  SafetensorsError,
  Tensor,
  VisionTransformer,
  cudaAvailable,
  errorCode,
  readImages,
  type VitConfig,
} from '../lib/index.js';
import { matmul, matmulSync } from '../lib/entry/ops.js';
import { readSafetensors } from '../lib/entry/safetensors.js';
import { BatcherFullError, serveModel } from '../lib/entry/serve.js';
import { runOutOfMemoryChild } from './fixtures/out_of_memory_child.js';
import { randomArray, randomizedModel, scratchDirectory } from './helpers.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const tiny: Partial<VitConfig> = { imageSize: 12, patchSize: 4, inChannels: 2, numClasses: 5, width: 24, depth: 2, heads: 2, mlpRatio: 2, seed: 3, attention: 'softmax' };
const images = (count: number) => Tensor.fromArray(randomArray(count * 2 * 12 * 12), [count, 2, 12, 12]);
const dir = scratchDirectory('castling-codes-');

/** What `fn` threw (or its promise rejected with); fails the test when it did not fail. */
async function failureOf(fn: () => unknown): Promise<unknown> {
  try {
    await fn();
  } catch (error) {
    return error;
  }
  throw new Error('expected the call to fail');
}

describe('error codes', () => {
  it('a wrong type: a TypeError with ERR_CASTLING_INVALID_ARG_TYPE, from lib/ and from the addon', async () => {
    const fromLib = await failureOf(() => VisionTransformer.create({ ...tiny, attention: 'dense' as 'softmax' }));
    expect(fromLib).toBeInstanceOf(TypeError);
    expect(errorCode(fromLib)).toBe(ErrorCodes.INVALID_ARG_TYPE);
    const fromAddon = await failureOf(() => native.setThreads('two' as unknown as number));
    expect(fromAddon).toBeInstanceOf(TypeError);
    expect(errorCode(fromAddon)).toBe(ErrorCodes.INVALID_ARG_TYPE);
  });

  it('a wrong value: a RangeError with ERR_CASTLING_INVALID_ARG_VALUE, from lib/, the addon and an async op', async () => {
    const model = VisionTransformer.create(tiny);
    const fromLib = await failureOf(() => new AdamW(model.parameters(), { lr: -1 }));
    expect(fromLib).toBeInstanceOf(RangeError);
    expect(errorCode(fromLib)).toBe(ErrorCodes.INVALID_ARG_VALUE);
    const a = Tensor.fromArray(randomArray(6), [2, 3]);
    for (const call of [() => matmulSync(a, a), () => matmul(a, a)]) {
      const fromAddon = await failureOf(call);
      expect((fromAddon as Error).message).toMatch(/^matmul: inner dimensions differ/);
      expect(fromAddon).toBeInstanceOf(RangeError);
      expect(errorCode(fromAddon)).toBe(ErrorCodes.INVALID_ARG_VALUE);
    }
    a.dispose();
    model.dispose();
  });

  it('over a limit: ERR_CASTLING_LIMIT_EXCEEDED, still a RangeError (ImagePixelLimitError, a memory budget)', async () => {
    const png = await sharp(Buffer.alloc(30 * 20 * 3, 128), { raw: { width: 30, height: 20, channels: 3 } }).png().toBuffer();
    const pixels = await failureOf(() => readImages([png], { size: 8, maxInputPixels: 100 }));
    expect(pixels).toBeInstanceOf(ImagePixelLimitError);
    expect(pixels).toBeInstanceOf(RangeError);
    expect(errorCode(pixels)).toBe(ErrorCodes.LIMIT_EXCEEDED);
    const budget = await failureOf(() => VisionTransformer.create(tiny, { memoryBudget: 1000 }));
    expect(errorCode(budget)).toBe(ErrorCodes.LIMIT_EXCEEDED);
  });

  it('a bad file: ERR_CASTLING_BAD_FILE (SafetensorsError, an undecodable image)', async () => {
    const path = join(dir, 'garbage.safetensors');
    writeFileSync(path, Buffer.from('this is not a safetensors file at all'));
    const file = await failureOf(() => readSafetensors(path));
    expect(file).toBeInstanceOf(SafetensorsError);
    expect(errorCode(file)).toBe(ErrorCodes.BAD_FILE);
    const image = await failureOf(() => readImages([Buffer.from('not an image')], { size: 8 }));
    expect(errorCode(image)).toBe(ErrorCodes.BAD_FILE);
  });

  it('a call the object cannot take now: ERR_CASTLING_INVALID_STATE; operations in flight: ERR_CASTLING_BUSY', async () => {
    const softmax = VisionTransformer.create(tiny);
    expect(errorCode(await failureOf(() => softmax.setAuxBranch({ tau: 0.1, l1: 0 })))).toBe(ErrorCodes.INVALID_STATE);
    softmax.dispose();
    const castling = VisionTransformer.create({ ...tiny, attention: 'castling' });
    const pass = castling.predict(images(1));
    expect(errorCode(await failureOf(() => castling.setAuxBranch(null)))).toBe(ErrorCodes.BUSY);
    (await pass).dispose();
    castling.dispose();
  });

  it('a full batcher: BatcherFullError with ERR_CASTLING_BUSY', async () => {
    const model = VisionTransformer.create(tiny);
    const batcher = model.batcher({ maxWaiting: 1 });
    const running = batcher.predict(images(1));
    const waiting = batcher.predict(images(1));
    const full = await failureOf(() => batcher.predict(images(1)));
    expect(full).toBeInstanceOf(BatcherFullError);
    expect(errorCode(full)).toBe(ErrorCodes.BUSY);
    await Promise.all([running, waiting]);
    model.dispose();
  });

  it('used after dispose(): ERR_CASTLING_DISPOSED (a tensor, an op input, a model)', async () => {
    const t = Tensor.fromArray(randomArray(4), [2, 2]);
    t.dispose();
    expect(errorCode(await failureOf(() => t.toFloat32Array()))).toBe(ErrorCodes.DISPOSED);
    expect(errorCode(await failureOf(() => matmulSync(t, t)))).toBe(ErrorCodes.DISPOSED);
    const model = VisionTransformer.create(tiny);
    model.dispose();
    expect(errorCode(await failureOf(() => model.predict(images(1))))).toBe(ErrorCodes.DISPOSED);
  });

  it("aborted: an AbortError with ERR_CASTLING_ABORTED and the signal's reason as its cause; a reason of the caller's passes as given", async () => {
    const model = VisionTransformer.create(tiny);
    const signal = AbortSignal.abort();
    const aborted = await failureOf(() => model.predict(images(1), { signal }));
    expect((aborted as Error).name).toBe('AbortError');
    expect(errorCode(aborted)).toBe(ErrorCodes.ABORTED);
    expect((aborted as Error).cause).toBe(signal.reason);
    const controller = new AbortController();
    const waiting = model.batcher().predict(images(1), { signal: controller.signal });
    controller.abort();
    expect(errorCode(await failureOf(() => waiting))).toBe(ErrorCodes.ABORTED);
    expect(errorCode(await failureOf(() => model.classify([Buffer.from('x')], { signal })))).toBe(ErrorCodes.ABORTED);
    const mine = new Error('client left');
    expect(await failureOf(() => model.predict(images(1), { signal: AbortSignal.abort(mine) }))).toBe(mine);
    model.dispose();
  });

  it.skipIf(cudaAvailable().available)('no CUDA here: ERR_CASTLING_UNSUPPORTED', async () => {
    const t = Tensor.fromArray(randomArray(4), [2, 2]);
    expect(errorCode(await failureOf(() => t.to('cuda')))).toBe(ErrorCodes.UNSUPPORTED);
    expect(errorCode(await failureOf(() => VisionTransformer.create({ ...tiny, device: 'cuda' })))).toBe(ErrorCodes.UNSUPPORTED);
    t.dispose();
  });

  it('out of native memory: ERR_CASTLING_OUT_OF_MEMORY, on the JavaScript thread and off it', () => {
    const run = runOutOfMemoryChild();
    expect(run.status, `${run.stderr}\n(signal ${run.signal})`).toBe(0);
    const { codes } = JSON.parse(run.stdout) as { codes: Record<string, string> };
    expect(codes).toEqual({ 'zeros 64 MiB': ErrorCodes.OUT_OF_MEMORY, 'fromArray 1 MiB': ErrorCodes.OUT_OF_MEMORY, predict: ErrorCodes.OUT_OF_MEMORY });
  });

  it('non-finite outputs refused: ERR_CASTLING_NON_FINITE_OUTPUT', async () => {
    const model = randomizedModel(tiny, 0.3);
    model.parameters().get('norm.weight')!.set(new Float32Array(24).fill(3e38));
    model.parameters().get('norm.bias')!.set(new Float32Array(24).fill(3e38));
    expect(errorCode(await failureOf(() => model.predict(images(2), { nonFinite: 'refuse' })))).toBe(ErrorCodes.NON_FINITE_OUTPUT);
    model.dispose();
  });

  it("a fault of castling-vit's own: ERR_CASTLING_INTERNAL (the ONNX graph builder handed a float for an int attribute)", async () => {
    const graph = new GraphBuilder();
    expect(errorCode(await failureOf(() => graph.node('Softmax', ['x'], { axis: 1.5 }, { name: 'y' })))).toBe(ErrorCodes.INTERNAL);
  });

  it('serveModel answers with the status of the code and names the code', async () => {
    const model = VisionTransformer.create({ ...tiny, inChannels: 3 });
    const server = serveModel(model);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = server.address() as AddressInfo;
      const answer = await fetch(`http://127.0.0.1:${port}/classify`, { method: 'POST', body: 'not an image' });
      expect(answer.status).toBe(400);
      expect(((await answer.json()) as { code: string }).code).toBe(ErrorCodes.BAD_FILE);
      const top = await fetch(`http://127.0.0.1:${port}/classify?top=0`, { method: 'POST', body: 'x' });
      expect(top.status).toBe(400);
      expect(((await top.json()) as { code: string }).code).toBe(ErrorCodes.INVALID_ARG_VALUE);
    } finally {
      await server.drain(1000);
      model.dispose();
    }
  });
});

describe('the codes are the whole story', () => {
  /** Every .ts file under lib/. */
  function sources(folder: string): string[] {
    return readdirSync(folder).flatMap((name) => {
      const path = join(folder, name);
      return statSync(path).isDirectory() ? sources(path) : path.endsWith('.ts') ? [path] : [];
    });
  }

  it('lib/ makes no bare Error, TypeError or RangeError (each error it throws has a code)', () => {
    const bare = /\bnew (Error|TypeError|RangeError)\(/;
    const found = sources(join(root, 'lib'))
      .filter((path) => !path.endsWith(join('lib', 'errors.ts')))
      .flatMap((path) =>
        readFileSync(path, 'utf8')
          .split('\n')
          .flatMap((line, i) => (bare.test(line) ? [`${path.slice(root.length)}:${i + 1}: ${line.trim()}`] : [])),
      );
    expect(found).toEqual([]);
  });

  it("docs/errors.md's table lists exactly the codes of lib/errors.ts, and the addon's codes are among them", () => {
    const table = readFileSync(join(root, 'docs/errors.md'), 'utf8')
      .split('\n')
      .flatMap((line) => /^\| `(ERR_[A-Z_]+)` \|/.exec(line)?.[1] ?? []);
    expect([...table].sort()).toEqual(Object.values(ErrorCodes).sort());
    const addon = readFileSync(join(root, 'native/addon/js_error.h'), 'utf8').match(/ERR_CASTLING_[A-Z_]+/g) ?? [];
    expect(addon.length).toBeGreaterThan(0);
    for (const code of addon) expect(Object.values(ErrorCodes)).toContain(code);
  });

  it("the table's HTTP status of each code is the one serveModel answers (lib/serve/error_status.ts)", () => {
    const rows = readFileSync(join(root, 'docs/errors.md'), 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('| `ERR_'));
    expect(rows).toHaveLength(Object.values(ErrorCodes).length);
    for (const row of rows) {
      const code = /^\| `(ERR_[A-Z_]+)`/.exec(row)![1]!;
      const service = row.split('|').at(-2)!;
      const answer = answerOf({ code });
      // The service column starts with the status, or says there is nobody to answer.
      if (answer === null) expect(service, code).toMatch(/^ Nothing to answer/);
      else expect(service, code).toMatch(new RegExp(`^ ${answer.status}\\b`));
    }
  });
});
