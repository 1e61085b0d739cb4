// The attention kernels against the float64 references, on every CPU path, on fresh random
// inputs of awkward sizes: forward and backward of softmax and linear-angular attention (both
// convolution forms, with and without the auxiliary branch), the exact switch, zero rows.
import { describe, expect, it } from 'vitest';

import { Tensor } from '../lib/index.js';
import { attention } from '../lib/entry/ops.js';
import * as ref from './attention_reference.js';
import { expectClose, onEachPath, randomArray } from './helpers.js';

const TOKENS = [1, 2, 17, 197, 257];

/**
 * A threshold near `target` that sits in a gap between the probabilities of every head, so that
 * float32 rounding cannot move an entry across it (the mask is a step function: a kernel and a
 * float64 reference may only be compared where it is not decided by rounding).
 */
function thresholdInGap(q: Float32Array, k: Float32Array, heads: number, N: number, d: number, target: number): number {
  const values: number[] = [];
  for (let h = 0; h < heads; h++) {
    const p = ref.attentionProbabilities(q.subarray(h * N * d, (h + 1) * N * d), k.subarray(h * N * d, (h + 1) * N * d), N, d, 1 / Math.sqrt(d));
    for (const a of p) if (a > target / 2 && a < target * 2) values.push(a);
  }
  values.push(target / 2, target * 2);
  values.sort((a, b) => a - b);
  let best = target;
  let widest = 0;
  for (let i = 1; i < values.length; i++) {
    if (values[i]! - values[i - 1]! > widest) {
      widest = values[i]! - values[i - 1]!;
      best = (values[i]! + values[i - 1]!) / 2;
    }
  }
  return best;
}
const WIDTHS = [16, 32, 64];

/** Runs a per-head float64 function over (B, H) and stacks its outputs. */
function perHead<T extends Record<string, ArrayLike<number> | number>>(B: number, H: number, N: number, d: number, inputs: Float32Array[], fn: (head: number, slices: Float32Array[]) => T) {
  const out: Record<string, number[]> = {};
  for (let h = 0; h < B * H; h++) {
    const slices = inputs.map((x) => x.subarray(h * N * d, (h + 1) * N * d));
    const r = fn(h % H, slices);
    for (const [key, value] of Object.entries(r)) {
      out[key] ??= [];
      if (typeof value === 'number') out[key]!.push(value);
      else out[key]!.push(...Array.from(value));
    }
  }
  return out;
}

describe('softmax attention', () => {
  it('forward and backward match float64 on every path', async () => {
    await onEachPath(async (path) => {
      for (const N of TOKENS) {
        for (const d of WIDTHS) {
          const [B, H] = N > 100 ? [1, 2] : [2, 3];
          const shape = [B, H, N, d];
          const n = B * H * N * d;
          const [q, k, v, dy] = [randomArray(n), randomArray(n), randomArray(n), randomArray(n)];
          const T = (x: Float32Array) => Tensor.fromArray(x, shape);
          const [tq, tk, tv] = [T(q), T(k), T(v)];
          const fwd = await attention.softmax(tq, tk, tv);
          const want = perHead(B, H, N, d, [q, k, v, dy], (_h, [qs, ks, vs, gs]) => {
            const f = ref.softmaxAttention(qs!, ks!, vs!, N, d);
            const g = ref.softmaxAttentionBackward(qs!, ks!, vs!, gs!, N, d);
            return { y: f.y, lse: f.lse, dq: g.dq, dk: g.dk, dv: g.dv };
          });
          const label = `${path} N=${N} d=${d}`;
          expectClose(fwd.y.toFloat32Array(), want.y!, 2e-6, 1e-4, `${label} y`);
          expectClose(fwd.lse.toFloat32Array(), want.lse!, 2e-6, 1e-5, `${label} lse`);
          const g = await attention.softmaxBackward(tq, tk, tv, fwd, T(dy));
          expectClose(g.dq.toFloat32Array(), want.dq!, 1e-5, 2e-4, `${label} dq`);
          expectClose(g.dk.toFloat32Array(), want.dk!, 1e-5, 2e-4, `${label} dk`);
          expectClose(g.dv.toFloat32Array(), want.dv!, 1e-5, 2e-4, `${label} dv`);
        }
      }
    });
  });
});

describe('linear-angular attention', () => {
  const cases: Array<{ form: 'tokens' | 'spatial'; aux?: { tau: number; l1: number } }> = [
    { form: 'tokens' },
    { form: 'spatial' },
    { form: 'tokens', aux: { tau: 0.01, l1: 0.05 } },
    { form: 'spatial', aux: { tau: 0.02, l1: 0 } },
  ];
  it('forward and backward match float64 on every path (both forms, with and without the branch)', async () => {
    await onEachPath(async (path) => {
      for (const N of TOKENS) {
        for (const d of WIDTHS) {
          for (const c of cases) {
            if (c.form === 'spatial' && N === 1) continue; // no patch grid without patches
            // The branch's mask steps where a probability crosses tau: only the large-N cases
            // with random inputs keep enough entries; at every size it must still agree.
            const [B, H] = N > 100 ? [1, 2] : [2, 2];
            const K = 3;
            const shape = [B, H, N, d];
            const n = B * H * N * d;
            const [q, k, v, dy] = [randomArray(n, 2), randomArray(n, 2), randomArray(n), randomArray(n)];
            const taps = c.form === 'tokens' ? K : K * K;
            const w = randomArray(H * taps);
            const T = (x: Float32Array) => Tensor.fromArray(x, shape);
            const [tq, tk, tv] = [T(q), T(k), T(v)];
            const tw = Tensor.fromArray(w, c.form === 'tokens' ? [H, K] : [H, K, K]);
            const aux = c.aux && { ...c.aux, tau: thresholdInGap(q, k, B * H, N, d, c.aux.tau) };
            const opts = { form: c.form, aux };
            const fwd = await attention.linearAngular(tq, tk, tv, tw, opts);
            const want = perHead(B, H, N, d, [q, k, v, dy], (h, [qs, ks, vs, gs]) => {
              const wh = w.subarray(h * taps, (h + 1) * taps);
              const o = { form: c.form, kernel: K, aux };
              const f = ref.linearAngular(qs!, ks!, vs!, wh, N, d, o);
              const g = ref.linearAngularBackward(qs!, ks!, vs!, wh, gs!, N, d, o);
              return { y: f.y, l1: f.l1, dq: g.dq, dk: g.dk, dv: g.dv, dw: g.dw };
            });
            // dw sums per head over batch items.
            const dw = new Float64Array(H * taps);
            want.dw!.forEach((x, i) => (dw[i % (H * taps)]! += x));
            const label = `${path} N=${N} d=${d} ${c.form}${c.aux ? ' aux' : ''}`;
            expectClose(fwd.y.toFloat32Array(), want.y!, 1e-5, 1e-4, `${label} y`);
            if (c.aux) expect(fwd.l1!).toBeCloseTo(want.l1!.reduce((a, b) => a + b, 0), 2);
            const g = await attention.linearAngularBackward(tq, tk, tv, tw, fwd, T(dy), opts);
            expectClose(g.dq.toFloat32Array(), want.dq!, 1e-4, 1e-3, `${label} dq`);
            expectClose(g.dk.toFloat32Array(), want.dk!, 1e-4, 1e-3, `${label} dk`);
            expectClose(g.dv.toFloat32Array(), want.dv!, 1e-4, 1e-3, `${label} dv`);
            expectClose(g.dWeight.toFloat32Array(), dw, 1e-4, 1e-3, `${label} dw`);
          }
        }
      }
    });
  });

  it('the switch is exact: the branch at tau = 1 gives bit-identical output to no branch', async () => {
    await onEachPath(async () => {
      for (const form of ['tokens', 'spatial'] as const) {
        const shape = [2, 3, 197, 32];
        const n = 2 * 3 * 197 * 32;
        const [q, k, v] = [randomArray(n, 3), randomArray(n, 3), randomArray(n)].map((x) => Tensor.fromArray(x, shape)) as [Tensor, Tensor, Tensor];
        const w = Tensor.fromArray(randomArray(form === 'tokens' ? 27 : 243), form === 'tokens' ? [3, 9] : [3, 9, 9]);
        const off = await attention.linearAngular(q, k, v, w, { form });
        const atOne = await attention.linearAngular(q, k, v, w, { form, aux: { tau: 1 } });
        expect(atOne.l1).toBe(0);
        expect(Buffer.from(atOne.y.toFloat32Array().buffer).equals(Buffer.from(off.y.toFloat32Array().buffer))).toBe(true);
        // ...while a low threshold does change it.
        const low = await attention.linearAngular(q, k, v, w, { form, aux: { tau: 0.005 } });
        expect(low.y.toFloat32Array()).not.toEqual(off.y.toFloat32Array());
      }
    });
  });

  it('a zero q, k or v row gives finite output and gradients', async () => {
    await onEachPath(async (path) => {
      const [B, H, N, d] = [1, 2, 17, 16];
      const n = B * H * N * d;
      const data = [randomArray(n), randomArray(n), randomArray(n)];
      for (const which of [0, 1, 2]) {
        const inputs = data.map((x) => Float32Array.from(x));
        inputs[which]!.fill(0, 3 * d, 4 * d); // token 3 of head 0
        if (which === 2) inputs[2]!.fill(0); // all of v: z = 0 everywhere
        const [q, k, v] = inputs.map((x) => Tensor.fromArray(x, [B, H, N, d])) as [Tensor, Tensor, Tensor];
        const w = Tensor.fromArray(randomArray(H * 9), [H, 9]);
        for (const aux of [undefined, { tau: 0.01 }]) {
          const f = await attention.linearAngular(q, k, v, w, { aux });
          expect(f.y.toFloat32Array().every(Number.isFinite), `${path} zero ${'qkv'[which]} y`).toBe(true);
          const g = await attention.linearAngularBackward(q, k, v, w, f, Tensor.fromArray(randomArray(n), [B, H, N, d]), { aux });
          for (const t of [g.dq, g.dk, g.dv, g.dWeight]) expect(t.toFloat32Array().every(Number.isFinite), `${path} zero ${'qkv'[which]} grads`).toBe(true);
        }
        const s = await attention.softmax(q, k, v);
        expect(s.y.toFloat32Array().every(Number.isFinite)).toBe(true);
      }
    });
  });

  it('bad shapes give clear errors', async () => {
    const t = (shape: number[]) => Tensor.zeros(shape);
    await expect(attention.softmax(t([1, 2, 3]), t([1, 2, 3]), t([1, 2, 3]))).rejects.toThrow(/attentionSoftmax: q has shape \[1, 2, 3\]/);
    await expect(attention.softmax(t([1, 2, 5, 8]), t([1, 2, 4, 8]), t([1, 2, 5, 8]))).rejects.toThrow(/k has shape \[1, 2, 4, 8\], expected \[1, 2, 5, 8\]/);
    await expect(attention.linearAngular(t([1, 2, 5, 8]), t([1, 2, 5, 8]), t([1, 2, 5, 8]), t([2, 4]))).rejects.toThrow(/odd|kernel/i);
    await expect(attention.linearAngular(t([1, 2, 6, 8]), t([1, 2, 6, 8]), t([1, 2, 6, 8]), t([2, 3, 3]), { form: 'spatial' })).rejects.toThrow(/square|grid/i);
    await expect(attention.linearAngular(t([1, 2, 5, 8]), t([1, 2, 5, 8]), t([1, 2, 5, 8]), t([3, 3]))).rejects.toThrow(/dconvWeight/);
  });
});
