// The float64 attention references' analytic gradients against central finite differences of
// their own forward passes: the references are what the kernels are judged by, so they are
// checked first.
import { describe, expect, it } from 'vitest';

import * as ref from './attention_reference.js';
import { random } from './helpers.js';

function randn(n: number, scale = 1): Float64Array {
  return Float64Array.from({ length: n }, () => (random() * 2 - 1) * scale);
}

/**
 * Max relative error between an analytic gradient and central differences of `loss`, with a
 * floor of 1e-3 on the denominator: central differences carry ~1e-9 of rounding error, which
 * would otherwise dominate the relative error of gradients near zero.
 */
function gradientError(x: Float64Array, analytic: Float64Array, loss: () => number, h = 1e-6): number {
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const saved = x[i]!;
    x[i] = saved + h;
    const up = loss();
    x[i] = saved - h;
    const down = loss();
    x[i] = saved;
    const numeric = (up - down) / (2 * h);
    worst = Math.max(worst, Math.abs(numeric - analytic[i]!) / Math.max(1e-3, Math.abs(numeric)));
  }
  return worst;
}

describe('float64 attention references', () => {
  it('softmax attention gradients match finite differences', () => {
    const [N, d] = [5, 3];
    const q = randn(N * d), k = randn(N * d), v = randn(N * d), g = randn(N * d);
    const loss = () => ref.softmaxAttention(q, k, v, N, d).y.reduce((s, y, i) => s + y * g[i]!, 0);
    const grads = ref.softmaxAttentionBackward(q, k, v, g, N, d);
    expect(gradientError(q, grads.dq, loss)).toBeLessThan(1e-5);
    expect(gradientError(k, grads.dk, loss)).toBeLessThan(1e-5);
    expect(gradientError(v, grads.dv, loss)).toBeLessThan(1e-5);
  });

  const cases: Array<[string, ref.LinearAngularOptions, number]> = [
    ['tokens', { form: 'tokens', kernel: 3 }, 6],
    ['spatial', { form: 'spatial', kernel: 3 }, 10],
    ['tokens + aux + l1', { form: 'tokens', kernel: 5, aux: { tau: 0.12, l1: 0.3 } }, 6],
    ['spatial + aux', { form: 'spatial', kernel: 3, aux: { tau: 0.08 } }, 10],
  ];
  for (const [name, opts, N] of cases) {
    it(`linear-angular (${name}) gradients match finite differences`, () => {
      const d = 4;
      const wSize = opts.form === 'tokens' ? opts.kernel : opts.kernel ** 2;
      let q: Float64Array, k: Float64Array;
      // The mask is a step function: redraw until no probability sits near the threshold, so
      // that the finite differences do not step across it.
      for (;;) {
        q = randn(N * d, 1.5);
        k = randn(N * d, 1.5);
        if (!opts.aux) break;
        const probs = probabilities(q, k, N, d);
        if (probs.every((a) => Math.abs(a - opts.aux!.tau) > 1e-3)) break;
      }
      const v = randn(N * d), w = randn(wSize), g = randn(N * d);
      const loss = () => {
        const f = ref.linearAngular(q, k, v, w, N, d, opts);
        return f.y.reduce((s, y, i) => s + y * g[i]!, 0) + (opts.aux?.l1 ?? 0) * f.l1;
      };
      const grads = ref.linearAngularBackward(q, k, v, w, g, N, d, opts);
      expect(gradientError(q, grads.dq, loss)).toBeLessThan(1e-5);
      expect(gradientError(k, grads.dk, loss)).toBeLessThan(1e-5);
      expect(gradientError(v, grads.dv, loss)).toBeLessThan(1e-5);
      expect(gradientError(w as Float64Array, grads.dw, loss)).toBeLessThan(1e-5);
      if (opts.aux) expect(ref.linearAngular(q, k, v, w, N, d, opts).l1).toBeGreaterThan(0);
    });
  }
});

function probabilities(q: Float64Array, k: Float64Array, N: number, d: number): number[] {
  const out: number[] = [];
  for (let n = 0; n < N; n++) {
    const logits = Array.from({ length: N }, (_, m) => {
      let s = 0;
      for (let i = 0; i < d; i++) s += q[n * d + i]! * k[m * d + i]!;
      return s / Math.sqrt(d);
    });
    const max = Math.max(...logits);
    const e = logits.map((s) => Math.exp(s - max));
    const sum = e.reduce((a, b) => a + b, 0);
    out.push(...e.map((x) => x / sum));
  }
  return out;
}
