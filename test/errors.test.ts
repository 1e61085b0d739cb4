// Bad input gets a clear error that names what was wrong and what was expected; never a crash.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';

import { AdamW, Tensor, VisionTransformer, presets, setCpuPath, setThreads } from '../lib/index.js';
import { add, attention, backward, gelu, layerNorm, linear, linearSync, matmul, matmulSync, scale, softmax } from '../lib/entry/ops.js';
import { native } from '../lib/native.js';
import { runAsync } from '../lib/ops.js';
import { testSeed } from './helpers.js';

const t = (shape: number[]) => Tensor.zeros(shape);

describe('tensor construction', () => {
  it('rejects bad shapes and data', () => {
    expect(() => Tensor.zeros([2, -1])).toThrow(/shape\[1\] is -1: expected a non-negative integer/);
    expect(() => Tensor.zeros([2.5])).toThrow(/expected a non-negative integer/);
    expect(() => Tensor.zeros('3' as unknown as number[])).toThrow(/must be an array/);
    expect(() => Tensor.zeros([1, 1, 1, 1, 1, 1, 1, 1, 1])).toThrow(/9 dimensions, expected at most 8/);
    expect(() => Tensor.fromArray(new Float32Array(5), [2, 3])).toThrow(/5 elements, shape \[2, 3\] needs 6/);
    expect(() => Tensor.fromArray(new Float64Array(6) as unknown as Float32Array, [2, 3])).toThrow(/Float32Array.*got Float64Array/);
    expect(() => Tensor.fromArray(new Int32Array(6) as unknown as Float32Array, [6])).toThrow(/dtype float32/);
  });

  // An empty Float32Array has no memory behind it: copying zero bytes from or to its null data
  // pointer was undefined behaviour (reported by `npm run test:sanitizers`, harmless elsewhere).
  it('zero-element tensors copy in and out of empty arrays', () => {
    const empty = Tensor.fromArray(new Float32Array(0), [2, 0]);
    expect(empty.shape).toEqual([2, 0]);
    empty.set(new Float32Array(0));
    expect(empty.toFloat32Array()).toEqual(new Float32Array(0));
    expect(new native.NativeTensor([0, 3], new Float32Array(0)).toFloat32Array()).toEqual(new Float32Array(0));
  });

  it('rejects absurd sizes before allocating', () => {
    expect(() => Tensor.zeros([1 << 20, 1 << 20, 1 << 20])).toThrow(/too large|more than/);
    expect(() => Tensor.zeros([1 << 30, 1 << 5])).toThrow(/physical memory|more than/);
  });

  it('the native constructor validates too', () => {
    expect(() => new native.NativeTensor([2, 2], new Float32Array(3))).toThrow(/3 elements, expected 4/);
    expect(() => new native.NativeTensor([-1])).toThrow(/non-negative integer/);
    expect(() => new native.NativeTensor([2], new Uint8Array(2) as unknown as Float32Array)).toThrow(/Float32Array/);
  });
});

describe('disposed tensors', () => {
  it('cannot be used, and dispose twice is harmless', async () => {
    const x = Tensor.fromArray([1, 2, 3], [3]);
    x.dispose();
    x.dispose();
    expect(x.disposed).toBe(true);
    expect(() => x.shape).toThrow(/disposed/);
    expect(() => x.toFloat32Array()).toThrow(/disposed/);
    await expect(gelu(x)).rejects.toThrow(/gelu: x has been disposed/);
    expect(() => native.runOp('gelu', [x.handle], {}, false)).toThrow(/input 'x' has been disposed/);
  });

  it('a view outlives dispose() without touching freed memory', () => {
    const x = Tensor.fromArray([1, 2, 3], [3]);
    const view = x.view();
    x.dispose();
    expect(Array.from(view)).toEqual([1, 2, 3]);
  });

  it('an input disposed while its op runs is kept alive until the op ends', async () => {
    const a = Tensor.fromArray(new Float32Array(512 * 512).fill(1), [512, 512]);
    const pending = matmul(a, a);
    a.dispose();
    const c = await pending;
    expect(c.toFloat32Array()[0]).toBe(512);
  });
});

describe('writes into tensors an operation is using', () => {
  const busy = /Tensor.set: an operation still running reads or writes this tensor .*; await it before writing to the tensor/;

  it('Tensor.set refuses while an async op or plan holds the tensor (or a reshape of it), and works once it has ended', async () => {
    const a = Tensor.fromArray(new Float32Array(256 * 256).fill(1), [256, 256]);
    const alias = a.reshape([256 * 256]);
    const pending = matmul(a, a);
    expect(() => a.set(new Float32Array(256 * 256).fill(2))).toThrow(busy);
    expect(() => alias.set(new Float32Array(256 * 256).fill(2))).toThrow(busy);
    expect((await pending).toFloat32Array()[0]).toBe(256); // the product of the values it was called with
    a.set(new Float32Array(256 * 256).fill(2));
    expect((await matmul(a, a)).toFloat32Array()[0]).toBe(1024);
    // A failed op lets go too.
    const failing = matmul(a, Tensor.zeros([3, 3]));
    expect(() => a.set(new Float32Array(256 * 256))).toThrow(busy);
    await expect(failing).rejects.toThrow(/matmul/);
    a.set(new Float32Array(256 * 256));
    // Sync ops hold nothing once they return.
    matmulSync(a, a).dispose();
    a.set(new Float32Array(256 * 256));
  });

  it("a model's weights cannot be written while a predict or trainStep of it runs", async () => {
    const model = VisionTransformer.create({ ...presets.digits, attention: 'softmax', seed: 1 });
    const head = model.parameters().get('head.weight')!;
    const images = Tensor.zeros([2, 1, 28, 28]);
    const optimizer = new AdamW(model.parameters(), { lr: 1e-3 });
    for (const call of [() => model.predict(images), () => model.trainStep(images, [1, 2], optimizer)]) {
      const running = call();
      expect(() => head.set(new Float32Array(head.size))).toThrow(busy);
      await running;
      head.set(new Float32Array(head.size));
    }
    model.dispose();
  });
});

describe('op arguments', () => {
  it('wrong shapes name the op, the input and the expectation', async () => {
    await expect(matmul(t([2, 3]), t([4, 5]))).rejects.toThrow(/matmul: inner dimensions differ: a \[2, 3\] has K=3 but b \[4, 5\] has K=4/);
    expect(() => matmulSync(t([3]), t([3, 3]))).toThrow(/matmul: a has shape \[3\], expected at least 2 dimensions/);
    await expect(matmul(t([2, 2, 3]), t([3, 3, 4]))).rejects.toThrow(/b has shape \[3, 3, 4\], expected a 2-D matrix or the batch dimensions \[2\]/);
    await expect(linear(t([4, 8]), t([3, 7]))).rejects.toThrow(/linear: weight has shape \[3, 7\], expected \[3, 8\]/);
    await expect(linear(t([4, 8]), t([3, 8]), { bias: t([4]) })).rejects.toThrow(/linear: bias has shape \[4\], expected \[3\]/);
    await expect(linear(t([4, 8]), t([3, 8]), { residual: t([3, 4]) })).rejects.toThrow(/linear: residual has shape \[3, 4\], expected \[4, 3\]/);
    await expect(add(t([2, 3]), t([2]))).rejects.toThrow(/add: b has shape \[2\], expected \[2, 3\] or a trailing part of it/);
    await expect(layerNorm(t([2, 4]), t([3]), t([4]))).rejects.toThrow(/layerNorm: weight has shape \[3\], expected \[4\]/);
    await expect(backward.softmaxBackward(t([2, 4]), t([2, 5]))).rejects.toThrow(/softmaxBackward: dy has shape \[2, 5\], expected \[2, 4\]/);
  });

  it('wrong types are TypeErrors naming the argument', async () => {
    await expect(gelu([1, 2] as unknown as Tensor)).rejects.toThrow(TypeError);
    await expect(gelu([1, 2] as unknown as Tensor)).rejects.toThrow(/gelu: x must be a Tensor, got a plain array of 2 entries: make it a Tensor with Tensor.fromArray/);
    expect(() => linearSync(t([2, 2]), t([2, 2]), { activation: 'relu' as 'gelu' })).toThrow(/activation 'relu' is unknown/);
    await expect(scale(t([2]), Number.NaN)).rejects.toThrow(/finite number/);
    await expect(layerNorm(t([2, 4]), t([4]), t([4]), { eps: -1 })).rejects.toThrow(/eps must be a positive number/);
    expect(() => native.runOp('noSuchOp', [], {}, false)).toThrow(/unknown op 'noSuchOp'/);
    expect(() => native.runOp('gelu', [{} as never], {}, false)).toThrow(/input 'x' must be a Tensor/);
    expect(() => native.runOp('scale', [t([2]).handle], { scale: 'x' as unknown as number }, false)).toThrow(/options.scale must be a number or a boolean/);
    expect(() => native.runOp('gelu', [t([2]).handle, t([2]).handle], {}, false)).toThrow(/got 2 inputs, expected at most 1/);
  });

  it('backend knobs reject bad values', () => {
    expect(() => setThreads(0)).toThrow(/expected an integer from 1 to 256/);
    expect(() => setThreads(1.5)).toThrow(RangeError);
    expect(() => native.setThreads(1e9)).toThrow(/expected an integer from 1 to 256/);
    expect(() => setCpuPath('neon' as 'avx2')).toThrow(/unknown CPU path 'neon'/);
    expect(() => native.setIsa('sse9')).toThrow(/unknown CPU path 'sse9': expected one of scalar, avx2, avx512/);
    expect(() => Tensor.zeros([2]).to('cuda')).toThrow(/Tensor.to\('cuda'\): .*CUDA/);
  });

  it('an empty tensor flows through ops', async () => {
    expect((await softmax(t([0, 5]))).shape).toEqual([0, 5]);
    expect((await matmul(t([0, 3]), t([3, 4]))).shape).toEqual([0, 4]);
    expect((await matmul(t([2, 0]), t([0, 4]))).toFloat32Array()).toEqual(new Float32Array(8));
  });

  it('operands of any generated shapes give a result or an Error naming the op, never a crash', async () => {
    const shape = fc.array(fc.integer({ min: 0, max: 6 }), { maxLength: 5 });
    const filled = (dims: number[]) => Tensor.fromArray(new Float32Array(dims.reduce((a, b) => a * b, 1)).map((_, i) => Math.sin(i)), dims);
    const ops: Array<[string, (x: Tensor[]) => Promise<unknown>]> = [
      ['matmul', ([a, b]) => matmul(a!, b!)],
      ['linear', ([a, b, c]) => linear(a!, b!, { bias: c })],
      ['add', ([a, b]) => add(a!, b!)],
      ['layerNorm', ([a, b, c]) => layerNorm(a!, b!, c!)],
      ['geluBackward', ([a, b]) => backward.geluBackward(a!, b!)],
      ['attentionSoftmax', ([a, b, c]) => attention.softmax(a!, b!, c!)],
      ['attentionLinearAngular', ([a, b, c, d]) => attention.linearAngular(a!, b!, c!, d!)],
      ['sparseAttention', ([a, b, c, d]) => runAsync('sparseAttention', ['q', 'k', 'v', 'indices'], [a!, b!, c!, d!])],
      ['sparsifinerPredict', ([a, b, c, d]) => runAsync('sparsifinerPredict', ['q', 'k', 'Wq', 'bq', 'Wk', 'bk', 'P', 'Bb'], [a!, b!, c!, d!, c!, d!, a!, b!])],
    ];
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...ops), fc.array(shape, { minLength: 4, maxLength: 4 }), async ([name, op], shapes) => {
        const inputs = shapes.map(filled);
        try {
          await op(inputs);
        } catch (error) {
          expect(error).toBeInstanceOf(Error);
          expect((error as Error).message).toMatch(new RegExp(`^${name}: `));
        } finally {
          inputs.forEach((x) => x.dispose());
        }
      }),
      { numRuns: 600, seed: testSeed },
    );
  });
});
