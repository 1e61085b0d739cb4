// Bad input gets a clear error that names what was wrong and what was expected; never a crash.
import { describe, expect, it } from 'vitest';

import { Tensor, add, backward, gelu, layerNorm, linear, linearSync, matmul, matmulSync, scale, setCpuPath, setThreads, softmax } from '../lib/index.js';
import { native } from '../lib/native.js';

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
    await expect(gelu([1, 2] as unknown as Tensor)).rejects.toThrow(/gelu: x must be a Tensor, got Array/);
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
});
