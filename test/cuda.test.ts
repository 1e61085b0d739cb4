// Device 'cuda': on a machine where CUDA is available the ops run on the GPU and match the CPU;
// elsewhere those tests are skipped with the reason in their name, and the error path is checked:
// asking for 'cuda' must say why it cannot be had (the build, or the CUDA error).
import { describe, expect, it } from 'vitest';

import { Tensor, VisionTransformer, backendInfo, cudaAvailable, presets } from '../lib/index.js';
import { attention, gelu, layerNormWithStats, linear, matmul, softmax } from '../lib/entry/ops.js';
import { randomArray, relativeError } from './helpers.js';

const cuda = cudaAvailable();
const skipReason = cuda.available ? '' : ` (skipped: ${cuda.reason})`;


function random(shape: number[]): Tensor {
  return Tensor.fromArray(randomArray(shape.reduce((a, b) => a * b, 1)), shape);
}

describe('cuda availability', () => {
  it('backendInfo and cudaAvailable agree, and give a reason when CUDA is off', () => {
    expect(backendInfo().cuda.available).toBe(cuda.available);
    if (!cuda.available) expect(cuda.reason).toMatch(/CUDA/);
    else expect(cuda.device).toBeTruthy();
  });

  it.skipIf(cuda.available)('a CPU-only build says so and how to rebuild', () => {
    if (cuda.built) return; // a CUDA build on a machine without a GPU quotes the CUDA error instead
    expect(cuda.reason).toMatch(/built for the CPU only/);
    expect(cuda.reason).toMatch(/CASTLING_CUDA=ON npm rebuild castling-vit/);
  });

  it.skipIf(cuda.available)("tensor.to('cuda') and device 'cuda' models fail with the reason", () => {
    const x = Tensor.fromArray([1, 2, 3], [3]);
    expect(() => x.to('cuda')).toThrow(/Tensor.to\('cuda'\): CUDA is not available: .*CUDA/);
    expect(x.device).toBe('cpu');
    expect(x.to('cpu')).toBe(x);
    expect(() => VisionTransformer.create({ ...presets.digits, device: 'cuda' })).toThrow(/config.device is 'cuda' but CUDA is not available/);
    expect(() => x.to('gpu' as 'cuda')).toThrow(/unknown device 'gpu'/);
  });
});

describe.skipIf(!cuda.available)(`cuda ops against the cpu${skipReason}`, () => {
  it('moves tensors both ways, bit for bit', () => {
    const x = random([7, 197]);
    const onGpu = x.to('cuda');
    expect(onGpu.device).toBe('cuda');
    expect(onGpu.dtype).toBe('float32');
    expect(onGpu.to('cpu').toFloat32Array()).toEqual(x.toFloat32Array());
    expect(onGpu.toFloat32Array()).toEqual(x.toFloat32Array());
    expect(() => onGpu.view()).toThrow(/view\(\) needs host memory/);
  });

  it('elementwise, layerNorm, linear and matmul match', async () => {
    const x = random([5, 33, 96]), w = random([130, 96]), b = random([130]), gamma = random([96]), beta = random([96]);
    const g = (t: Tensor) => t.to('cuda');
    const pairs: Array<[Tensor, Tensor]> = [
      [await gelu(x), await gelu(g(x))],
      [await softmax(x), await softmax(g(x))],
      [(await layerNormWithStats(x, gamma, beta)).y, (await layerNormWithStats(g(x), g(gamma), g(beta))).y],
      [await linear(x, w, { bias: b, activation: 'gelu' }), await linear(g(x), g(w), { bias: g(b), activation: 'gelu' })],
      [await matmul(x, w, { transB: true }), await matmul(g(x), g(w), { transB: true })],
    ];
    for (const [cpu, gpu] of pairs) {
      expect(gpu.device).toBe('cuda');
      expect(relativeError(gpu.toFloat32Array(), cpu.toFloat32Array(), 1e-6)).toBeLessThan(1e-5);
    }
  });

  it('softmax and linear-angular attention match, forward and backward', async () => {
    const shape = [2, 3, 197, 64];
    const q = random(shape), k = random(shape), v = random(shape), dy = random(shape), w = random([3, 9]);
    const g = (t: Tensor) => t.to('cuda');
    const cpu = await attention.softmax(q, k, v);
    const gpu = await attention.softmax(g(q), g(k), g(v));
    expect(relativeError(gpu.y.toFloat32Array(), cpu.y.toFloat32Array(), 1e-6)).toBeLessThan(1e-5);
    const cpuGrad = await attention.softmaxBackward(q, k, v, cpu, dy);
    const gpuGrad = await attention.softmaxBackward(g(q), g(k), g(v), gpu, g(dy));
    for (const key of ['dq', 'dk', 'dv'] as const) {
      expect(relativeError(gpuGrad[key].toFloat32Array(), cpuGrad[key].toFloat32Array(), 1e-6)).toBeLessThan(1e-5);
    }
    const angularCpu = await attention.linearAngular(q, k, v, w);
    const angularGpu = await attention.linearAngular(g(q), g(k), g(v), g(w));
    expect(relativeError(angularGpu.y.toFloat32Array(), angularCpu.y.toFloat32Array(), 1e-6)).toBeLessThan(1e-5);
  });

  it('mixing devices in one op is a clear error', async () => {
    const x = random([4, 8]);
    await expect(matmul(x, x.to('cuda'), { transB: true })).rejects.toThrow(/is on cuda but input 'a' is on cpu/);
  });
});
