// The ViT's layout, loss and optimizer ops against float64 references, on every CPU path.
import { describe, expect, it } from 'vitest';

import { Tensor, backendInfo, setThreads } from '../lib/index.js';
import { runSync } from '../lib/ops.js';
import { expectClose, onEachPath, randomArray } from './helpers.js';

const run = (op: string, inputs: Tensor[], attrs = {}) => runSync(op, inputs.map((_, i) => `input ${i}`), inputs, attrs);
const T = (data: Float32Array, shape: number[]) => Tensor.fromArray(data, shape);

describe('patch embedding', () => {
  it('equals a p x p stride-p convolution, forward and weight/bias gradients', async () => {
    await onEachPath((path) => {
      for (const [B, C, H, W, D, p] of [
        [1, 1, 4, 4, 3, 2],
        [2, 3, 28, 28, 7, 7],
        [1, 3, 32, 48, 17, 16],
      ] as const) {
        const images = randomArray(B * C * H * W);
        const weight = randomArray(D * C * p * p, 0.2);
        const bias = randomArray(D);
        const gw = W / p;
        const P = (H / p) * gw;
        const want = new Float64Array(B * P * D);
        const dy = randomArray(B * P * D);
        const dW = new Float64Array(D * C * p * p);
        const dB = new Float64Array(D);
        for (let b = 0; b < B; b++)
          for (let q = 0; q < P; q++)
            for (let o = 0; o < D; o++) {
              let acc = bias[o]!;
              const g = dy[(b * P + q) * D + o]!;
              dB[o]! += g;
              for (let c = 0; c < C; c++)
                for (let y = 0; y < p; y++)
                  for (let x = 0; x < p; x++) {
                    const pixel = images[((b * C + c) * H + Math.floor(q / gw) * p + y) * W + (q % gw) * p + x]!;
                    acc += weight[((o * C + c) * p + y) * p + x]! * pixel;
                    dW[((o * C + c) * p + y) * p + x]! += g * pixel;
                  }
              want[(b * P + q) * D + o] = acc;
            }
        const K = C * p * p;
        const [out] = run('patchEmbed', [T(images, [B, C, H, W]), T(weight, [D, C, p, p]), T(bias, [D])]);
        expect(out!.shape).toEqual([B, P, D]);
        expectClose(out!.toFloat32Array(), want, 2e-6 * Math.sqrt(K), 1e-5, `${path} patchEmbed ${[B, C, H, W, D, p]}`);
        const [dweight, dbias] = run('patchEmbedBackward', [T(images, [B, C, H, W]), T(weight, [D, C, p, p]), T(dy, [B, P, D])]);
        expectClose(dweight!.toFloat32Array(), dW, 2e-6 * Math.sqrt(B * P), 1e-5, `${path} dW`);
        expectClose(dbias!.toFloat32Array(), dB, 2e-6 * Math.sqrt(B * P), 1e-5, `${path} db`);
      }
    });
  });

  it('rejects images that do not fit the weight', () => {
    expect(() => run('patchEmbed', [Tensor.zeros([1, 3, 30, 32]), Tensor.zeros([8, 3, 16, 16])])).toThrow(/image size 30x32 is not divisible by the patch size 16/);
    expect(() => run('patchEmbed', [Tensor.zeros([1, 1, 32, 32]), Tensor.zeros([8, 3, 16, 16])])).toThrow(/weight has 3 input channels, images have 1/);
    expect(() => run('patchEmbed', [Tensor.zeros([3, 32, 32]), Tensor.zeros([8, 3, 16, 16])])).toThrow(/expected \[batch, channels, height, width\]/);
  });
});

describe('tokens and heads', () => {
  // The second size spreads the rows over several of the pool's chunks.
  it.each([
    [2, 4, 3],
    [5, 196, 37],
  ])('assembleTokens prepends the class token and adds the position embedding; its backward sums (%i x %i x %i)', (B, P, D) => {
    const patches = randomArray(B * P * D);
    const cls = randomArray(D);
    const pos = randomArray((P + 1) * D);
    const [x] = run('assembleTokens', [T(patches, [B, P, D]), T(cls, [1, 1, D]), T(pos, [1, P + 1, D])]);
    const got = x!.toFloat32Array();
    for (let b = 0; b < B; b++)
      for (let n = 0; n <= P; n++)
        for (let c = 0; c < D; c++) {
          const base = n === 0 ? cls[c]! : patches[(b * P + n - 1) * D + c]!;
          expect(got[(b * (P + 1) + n) * D + c]).toBe(Math.fround(base + pos[n * D + c]!));
        }
    const dx = randomArray(B * (P + 1) * D);
    const [dpatches, dcls, dpos] = run('assembleTokensBackward', [T(dx, [B, P + 1, D])]);
    const overBatch = (i: number) => Array.from({ length: B }, (_, b) => dx[b * (P + 1) * D + i]!).reduce((a, v) => a + v, 0);
    expectClose(dcls!.toFloat32Array(), Array.from({ length: D }, (_, c) => overBatch(c)), 1e-6, 1e-6, 'dcls');
    expectClose(dpos!.toFloat32Array(), Array.from({ length: (P + 1) * D }, (_, i) => overBatch(i)), 1e-6, 1e-6, 'dpos');
    expect(dpatches!.toFloat32Array()).toEqual(Float32Array.from({ length: B * P * D }, (_, i) => dx[Math.floor(i / (P * D)) * (P + 1) * D + D + (i % (P * D))]!));
  });

  it('splitHeads follows timm: qkv.reshape(B, N, 3, H, d).permute(2, 0, 3, 1, 4); mergeHeads inverts it', () => {
    const [B, N, H, d] = [2, 5, 3, 4];
    const qkv = randomArray(B * N * 3 * H * d);
    const [q, k, v] = run('splitHeads', [T(qkv, [B, N, 3 * H * d])], { heads: H, parts: 3 });
    const parts = [q!, k!, v!].map((t) => t.toFloat32Array());
    for (let p = 0; p < 3; p++)
      for (let b = 0; b < B; b++)
        for (let h = 0; h < H; h++)
          for (let n = 0; n < N; n++)
            for (let i = 0; i < d; i++) expect(parts[p]![((b * H + h) * N + n) * d + i]).toBe(qkv[(((b * N + n) * 3 + p) * H + h) * d + i]);
    expect(q!.shape).toEqual([B, H, N, d]);
    const [back] = run('mergeHeads', [q!, k!, v!]);
    expect(back!.toFloat32Array()).toEqual(qkv);
    const [single] = run('mergeHeads', [q!]);
    expect(single!.shape).toEqual([B, N, H * d]);
    const [again] = run('splitHeads', [single!], { heads: H });
    expect(again!.toFloat32Array()).toEqual(parts[0]);
    expect(() => run('splitHeads', [Tensor.zeros([1, 2, 10])], { heads: 3, parts: 3 })).toThrow(/expected \[batch, tokens, 3 x heads x headDim\] with heads = 3/);
    expect(() => run('splitHeads', [Tensor.zeros([1, 2, 9])])).toThrow(/attribute 'heads' is missing/);
  });

  it('selectToken picks the class token; its backward scatters', () => {
    const x = randomArray(2 * 3 * 4);
    const [cls] = run('selectToken', [T(x, [2, 3, 4])]);
    expect(Array.from(cls!.toFloat32Array())).toEqual([...x.slice(0, 4), ...x.slice(12, 16)]);
    const [dx] = run('selectTokenBackward', [cls!], { tokens: 3 });
    expect(dx!.shape).toEqual([2, 3, 4]);
    expect(Array.from(dx!.toFloat32Array().slice(0, 4))).toEqual(Array.from(x.slice(0, 4)));
    expect(Array.from(dx!.toFloat32Array().slice(4, 12))).toEqual(new Array(8).fill(0));
  });
});

describe('linearBackward', () => {
  it("gives the bias gradient as dy's column sums, the same bits on any thread count", () => {
    const [M, K, N] = [185, 24, 70]; // M: a whole block of 128 rows and a partial one
    const x = T(randomArray(M * K), [5, 37, K]);
    const w = T(randomArray(N * K), [N, K]);
    const dyValues = randomArray(M * N);
    const dy = T(dyValues, [5, 37, N]);
    const want = Array.from({ length: N }, (_, c) => Array.from({ length: M }, (_, r) => dyValues[r * N + c]!).reduce((a, v) => a + v, 0));
    const before = backendInfo().threads;
    const results: Float32Array[] = [];
    try {
      for (const threads of [1, 2, 3]) {
        setThreads(threads);
        results.push(run('linearBackward', [x, w, dy])[2]!.toFloat32Array());
      }
    } finally {
      setThreads(before);
    }
    expectClose(results[0]!, want, 1e-5, 1e-5, 'dbias');
    expect(results[1]).toEqual(results[0]);
    expect(results[2]).toEqual(results[0]);
  });
});

describe('checkFinite', () => {
  it('names the first non-finite element, whatever the thread count', () => {
    const values = randomArray(300007);
    values[250001] = Number.NaN;
    values[170003] = Number.POSITIVE_INFINITY;
    values[90001] = Number.NEGATIVE_INFINITY; // the first: chunks past it stop at their own
    const x = T(values, [values.length]);
    const before = backendInfo().threads;
    try {
      for (const threads of [1, 2, 3, 5]) {
        setThreads(threads);
        expect(() => run('checkFinite', [x])).toThrow('checkFinite: element 90001 is -Infinity, expected a finite number');
      }
      values[90001] = 0.5;
      expect(() => run('checkFinite', [T(values, [values.length])])).toThrow('checkFinite: element 170003 is Infinity');
      expect(run('checkFinite', [T(randomArray(300007), [300007])])).toEqual([]);
    } finally {
      setThreads(before);
    }
  });
});

describe('loss and optimizer', () => {
  it('crossEntropy with label smoothing: loss, gradient and accuracy against float64', () => {
    const [B, K] = [7, 10];
    const logits = randomArray(B * K, 4);
    const labels = Float32Array.from({ length: B }, (_, i) => (i * 3) % K);
    for (const s of [0, 0.1]) {
      const [loss, dlogits, correct] = run('crossEntropy', [T(logits, [B, K]), T(labels, [B])], { labelSmoothing: s });
      let total = 0;
      let hits = 0;
      const grad = new Float64Array(B * K);
      for (let b = 0; b < B; b++) {
        const z = Array.from(logits.slice(b * K, (b + 1) * K));
        const max = Math.max(...z);
        const lse = max + Math.log(z.reduce((a, v) => a + Math.exp(v - max), 0));
        const y = labels[b]!;
        z.forEach((v, c) => {
          const target = s / K + (c === y ? 1 - s : 0);
          total -= target * (v - lse);
          grad[b * K + c] = (Math.exp(v - lse) - target) / B;
        });
        hits += z.indexOf(max) === y ? 1 : 0;
      }
      expectClose(loss!.toFloat32Array(), [total / B], 1e-6, 1e-6, `loss s=${s}`);
      expectClose(dlogits!.toFloat32Array(), grad, 1e-7, 1e-5, `dlogits s=${s}`);
      expect(correct!.toFloat32Array()[0]).toBe(hits);
    }
    expect(() => run('crossEntropy', [Tensor.zeros([2, 3]), T(Float32Array.from([0, 3]), [2])])).toThrow(/labels\[1\] is 3, expected an integer class from 0 to 2/);
    expect(() => run('crossEntropy', [Tensor.zeros([2, 3]), T(Float32Array.from([0, 0.5]), [2])])).toThrow(/labels\[1\] is 0.5/);
    expect(() => run('crossEntropy', [T(Float32Array.from([0, Number.NaN, 0]), [1, 3]), Tensor.zeros([1])])).toThrow(/NaN or infinity/);
  });

  it('adamw updates param and moments in place like the float64 formula', async () => {
    await onEachPath(() => {
      const n = 1153;
      const p0 = randomArray(n), g = randomArray(n), m0 = randomArray(n, 0.1), v0 = randomArray(n, 0.1).map(Math.abs);
      const param = T(p0, [n]), m = T(m0, [n]), v = T(v0, [n]);
      const [lr, b1, b2, eps, wd, step] = [1e-2, 0.9, 0.999, 1e-8, 0.05, 3];
      run('adamw', [param, T(g, [n]), m, v], { lr, beta1: b1, beta2: b2, eps, weightDecay: wd, step });
      const wantM = Array.from(m0, (x, i) => b1 * x + (1 - b1) * g[i]!);
      const wantV = Array.from(v0, (x, i) => b2 * x + (1 - b2) * g[i]! ** 2);
      const wantP = Array.from(p0, (x, i) => x * (1 - lr * wd) - (lr * (wantM[i]! / (1 - b1 ** step))) / (Math.sqrt(wantV[i]! / (1 - b2 ** step)) + eps));
      expectClose(m.toFloat32Array(), wantM, 1e-7, 1e-5, 'm');
      expectClose(v.toFloat32Array(), wantV, 1e-7, 1e-5, 'v');
      expectClose(param.toFloat32Array(), wantP, 1e-6, 1e-5, 'param');
    });
    expect(() => run('adamw', [Tensor.zeros([2]), Tensor.zeros([3]), Tensor.zeros([2]), Tensor.zeros([2])])).toThrow(/adamw: grad has shape \[3\], expected \[2\]/);
    expect(() => run('adamw', [Tensor.zeros([2]), Tensor.zeros([2]), Tensor.zeros([2]), Tensor.zeros([2])], { beta1: 1 })).toThrow(/beta1 and beta2 in \[0, 1\)/);
  });
});
