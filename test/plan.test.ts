// Plans run a recorded sequence of ops natively in one call, with the same results as the ops
// run one by one, and reject malformed plans with errors naming the step.
import { describe, expect, it } from 'vitest';

import { Tensor } from '../lib/index.js';
import { PlanBuilder, layerNormSync, linearSync } from '../lib/entry/ops.js';
import { native } from '../lib/native.js';
import { randomArray } from './helpers.js';

describe('plans', () => {
  it('a pre-norm MLP block as one plan equals the ops run one by one, bit for bit', async () => {
    const [rows, C, hidden] = [197, 64, 256];
    const x = Tensor.fromArray(randomArray(rows * C), [rows, C]);
    const gamma = Tensor.fromArray(randomArray(C), [C]);
    const beta = Tensor.fromArray(randomArray(C), [C]);
    const w1 = Tensor.fromArray(randomArray(hidden * C, 0.1), [hidden, C]);
    const b1 = Tensor.fromArray(randomArray(hidden), [hidden]);
    const w2 = Tensor.fromArray(randomArray(C * hidden, 0.1), [C, hidden]);
    const b2 = Tensor.fromArray(randomArray(C), [C]);

    const p = new PlanBuilder();
    const input = p.input('x');
    const [normed] = p.op('layerNorm', [input, p.constant(gamma), p.constant(beta)], { eps: 1e-6 }, 1);
    const [h] = p.op('linear', [normed!, p.constant(w1), p.constant(b1)], { gelu: true });
    const [y] = p.op('linear', [h!, p.constant(w2), p.constant(b2), input]);
    const plan = p.build([y!]);
    expect(plan.length).toBe(3);

    const [fromPlan] = await plan.run(x);
    const [fromSync] = plan.runSync(x);
    const n = layerNormSync(x, gamma, beta, { eps: 1e-6 });
    const step = linearSync(linearSync(n, w1, { bias: b1, activation: 'gelu' }), w2, { bias: b2, residual: x });
    expect(fromPlan!.toFloat32Array()).toEqual(step.toFloat32Array());
    expect(fromSync!.toFloat32Array()).toEqual(step.toFloat32Array());
  });

  it('rejects malformed plans and bindings clearly', async () => {
    expect(() => new native.NativePlan([{ op: 'nope', inputs: [], outputs: [0], attrs: {} }], 1, [0])).toThrow(/unknown op 'nope'/);
    expect(() => new native.NativePlan([{ op: 'gelu', inputs: [0, 1], outputs: [2], attrs: {} }], 3, [2])).toThrow(/step 0 \(gelu\): 2 inputs, expected at most 1/);
    const reads = new native.NativePlan([{ op: 'gelu', inputs: [1], outputs: [2], attrs: {} }], 3, [2]);
    const x = Tensor.zeros([2]);
    expect(() => reads.run([x.handle, null, null], false)).toThrow(/step 0 \(gelu\) reads slot 1 before anything is written to it/);
    const range = new native.NativePlan([{ op: 'gelu', inputs: [7], outputs: [1], attrs: {} }], 2, [1]);
    expect(() => range.run([x.handle, null], false)).toThrow(/input slot 7 is out of range 0..1/);
    const ok = new native.NativePlan([{ op: 'gelu', inputs: [0], outputs: [1], attrs: {} }], 2, [1]);
    expect(() => ok.run([x.handle], false)).toThrow(/got 1 slots, expected 2/);
    const p = new PlanBuilder();
    const [y] = p.op('gelu', [p.input('x')]);
    const plan = p.build([y!]);
    await expect(plan.run()).rejects.toThrow(/got 0 inputs, expected 1 \(x\)/);
    // A shape error inside a step rejects the Promise with the op's own message.
    const q = new PlanBuilder();
    const [z] = q.op('matmul', [q.input('a'), q.input('b')]);
    await expect(q.build([z!]).run(Tensor.zeros([2, 3]), Tensor.zeros([4, 5]))).rejects.toThrow(/matmul: inner dimensions differ/);
  });
});
