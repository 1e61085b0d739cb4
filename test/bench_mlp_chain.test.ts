// The `onnx` benchmark's `mlp` case compares the two runtimes on a chain of MLP products: both of
// its forms (the ONNX graph, run here in onnxruntime-web, and the castling-vit plan) must compute
// the same products, checked against a float64 reference on awkward sizes.
import * as ort from 'onnxruntime-web';
import { describe, expect, it } from 'vitest';

import { Tensor } from '../lib/index.js';
import { mlpChain } from '../bench/onnx/mlp_chain.js';
import { expectClose, randomArray } from './helpers.js';

ort.env.wasm.numThreads = 1;

/** y = x W1^T W2^T ... in float64, from the plan's own weights (read back as (out, in)). */
function reference(x: Float32Array, rows: number, weights: Array<{ data: Float32Array; out: number; inF: number }>): Float64Array {
  let h = Float64Array.from(x);
  for (const { data, out, inF } of weights) {
    const next = new Float64Array(rows * out);
    for (let r = 0; r < rows; r++)
      for (let o = 0; o < out; o++) {
        let s = 0;
        for (let i = 0; i < inF; i++) s += h[r * inF + i]! * data[o * inF + i]!;
        next[r * out + o] = s;
      }
    h = next;
  }
  return h;
}

/** Within 1e-5 of the reference's largest magnitude, everywhere. */
function expectNearReference(actual: ArrayLike<number>, expected: Float64Array, label: string): void {
  const scale = Math.max(...Array.from(expected, Math.abs));
  expectClose(actual, expected, 1e-5 * scale, 0, label);
}

describe('bench onnx, kind mlp: the chain of MLP products', () => {
  it('the ONNX graph and the plan both compute x W1^T W2^T per layer, as a float64 reference does', async () => {
    const shape = { rows: 13, width: 20, hidden: 36, depth: 3 };
    const chain = mlpChain(shape, 5);
    const x = randomArray(shape.rows * shape.width, 3);
    try {
      expect(chain.flops).toBe(3 * 2 * 2 * 13 * 20 * 36);
      expect(chain.plan.ops).toEqual(Array(6).fill('linear'));
      const weights = chain.weights.map((w) => ({ data: w.toFloat32Array(), out: w.shape[0]!, inF: w.shape[1]! }));
      expect(weights.map((w) => [w.out, w.inF])).toEqual([[36, 20], [20, 36], [36, 20], [20, 36], [36, 20], [20, 36]]);
      const expected = reference(x, shape.rows, weights);
      // Each product keeps its input's scale: the output neither vanished nor blew up.
      const rms = Math.sqrt(expected.reduce((a, v) => a + v * v, 0) / expected.length);
      expect(rms).toBeGreaterThan(0.05);
      expect(rms).toBeLessThan(20);

      const input = Tensor.fromArray(x, [shape.rows, shape.width]);
      const [y] = await chain.plan.run(input);
      input.dispose();
      expect(y!.shape).toEqual([shape.rows, shape.width]);
      expectNearReference(y!.toFloat32Array(), expected, 'plan');
      y!.dispose();

      const session = await ort.InferenceSession.create(chain.onnx);
      try {
        const out = await session.run({ x: new ort.Tensor('float32', x, [shape.rows, shape.width]) });
        expect(session.outputNames).toHaveLength(1);
        const theirs = out[session.outputNames[0]!]!;
        expect(theirs.dims).toEqual([shape.rows, shape.width]);
        expectNearReference(theirs.data as Float32Array, expected, 'onnx graph');
      } finally {
        await session.release();
      }
    } finally {
      chain.dispose();
    }
  });
});
