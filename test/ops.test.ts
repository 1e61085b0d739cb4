// Every op on every CPU path against a float64 reference, on fresh random inputs of awkward sizes.
import { describe, it } from 'vitest';

import { Tensor } from '../lib/index.js';
import { add, backward, gelu, geluSync, layerNormWithStats, linear, matmul, matmulSync, scale, softmax } from '../lib/entry/ops.js';
import { runAsync } from '../lib/ops.js';
import * as ref from './reference.js';
import { expectClose, onEachPath, randomArray } from './helpers.js';

const SIZES = [1, 7, 197, 1153];

// GEMM error grows with K (float32 sums): scale the absolute tolerance with sqrt(K).
const gemmTol = (K: number) => 2e-6 * Math.sqrt(K) + 1e-6;

describe('matmul', () => {
  const shapes: Array<[number, number, number]> = [
    [1, 1, 1],
    [7, 197, 1],
    [197, 7, 1153],
    [1153, 7, 13],
    [13, 1153, 197],
    [197, 197, 64],
    [64, 1, 197],
  ];
  it('matches float64 for every transpose combination and shape, on every CPU path', async () => {
    await onEachPath(async (path) => {
      for (const [M, N, K] of shapes) {
        for (const transA of [false, true]) {
          for (const transB of [false, true]) {
            const a = randomArray(M * K);
            const b = randomArray(K * N);
            const ta = Tensor.fromArray(a, transA ? [K, M] : [M, K]);
            const tb = Tensor.fromArray(b, transB ? [N, K] : [K, N]);
            const alpha = 0.75;
            const got = await matmul(ta, tb, { transA, transB, alpha });
            const want = ref.matmul(a, b, M, N, K, { transA, transB, alpha });
            expectClose(got.toFloat32Array(), want, gemmTol(K), 1e-5, `${path} M=${M} N=${N} K=${K} tA=${transA} tB=${transB}`);
          }
        }
      }
    });
  });

  it('batches a stack of matrices against a shared or a batched b', async () => {
    await onEachPath(async (path) => {
      const [B, M, K, N] = [3, 17, 33, 7];
      const a = randomArray(B * M * K);
      const shared = randomArray(K * N);
      const batched = randomArray(B * K * N);
      const gotShared = (await matmul(Tensor.fromArray(a, [B, M, K]), Tensor.fromArray(shared, [K, N]))).toFloat32Array();
      const gotBatched = matmulSync(Tensor.fromArray(a, [B, M, K]), Tensor.fromArray(batched, [B, K, N])).toFloat32Array();
      for (let i = 0; i < B; i++) {
        const ai = a.subarray(i * M * K, (i + 1) * M * K);
        expectClose(gotShared.subarray(i * M * N, (i + 1) * M * N), ref.matmul(ai, shared, M, N, K), gemmTol(K), 1e-5, `${path} shared ${i}`);
        const bi = batched.subarray(i * K * N, (i + 1) * K * N);
        expectClose(gotBatched.subarray(i * M * N, (i + 1) * M * N), ref.matmul(ai, bi, M, N, K), gemmTol(K), 1e-5, `${path} batched ${i}`);
      }
    });
  });
});

describe('linear', () => {
  it('fuses bias, GELU and the residual into the GEMM', async () => {
    await onEachPath(async (path) => {
      for (const [rows, inF, outF] of [
        [1, 1, 1],
        [197, 384, 1153],
        [7, 1153, 197],
        [394, 64, 7],
      ] as const) {
        const x = randomArray(rows * inF);
        const w = randomArray(outF * inF, 0.2);
        const bias = randomArray(outF);
        const residual = randomArray(rows * outF);
        const plain = ref.matmul(x, w, rows, outF, inF, { transB: true });
        for (const activation of ['none', 'gelu'] as const) {
          for (const withResidual of [false, true]) {
            const got = await linear(Tensor.fromArray(x, [rows, inF]), Tensor.fromArray(w, [outF, inF]), {
              bias: Tensor.fromArray(bias, [outF]),
              activation,
              residual: withResidual ? Tensor.fromArray(residual, [rows, outF]) : undefined,
            });
            const want = plain.map((v, i) => {
              const pre = v + bias[i % outF]!;
              return (activation === 'gelu' ? ref.gelu(pre) : pre) + (withResidual ? residual[i]! : 0);
            });
            expectClose(got.toFloat32Array(), want, gemmTol(inF), 1e-5, `${path} ${rows}x${inF}->${outF} ${activation} residual=${withResidual}`);
          }
        }
      }
    });
  });

  it('sees a weight changed in place: set, a view, an alias, another CPU path', async () => {
    // linear keeps each weight packed for the GEMM until the weight may have changed.
    const [rows, inF, outF] = [197, 131, 37];
    const x = Tensor.fromArray(randomArray(rows * inF), [rows, inF]);
    const w = Tensor.fromArray(randomArray(outF * inF), [outF, inF]);
    const check = async (label: string) => {
      const want = ref.matmul(x.toFloat32Array(), w.toFloat32Array(), rows, outF, inF, { transB: true });
      expectClose((await linear(x, w)).toFloat32Array(), want, gemmTol(inF), 1e-5, label);
    };
    await check('first call');
    await check('second call (packed weight reused)');
    w.set(randomArray(outF * inF));
    await check('after set');
    const view = w.view();
    view.set(randomArray(outF * inF));
    await check('after a write through a view');
    view[5] = 3;
    await check('after a second write through the same live view');
    w.reshape([outF * inF]).set(randomArray(outF * inF));
    await check('after a write through a reshaped alias');
    await onEachPath(async (path) => {
      await check(`on ${path}`);
      w.set(randomArray(outF * inF));
      await check(`on ${path} after set`);
    });
  });

  it('keeps the leading dimensions of x', async () => {
    const y = await linear(Tensor.fromArray(randomArray(2 * 3 * 5), [2, 3, 5]), Tensor.fromArray(randomArray(4 * 5), [4, 5]));
    if (y.shape.join() !== '2,3,4') throw new Error(`shape ${y.shape}`);
  });
});

describe('elementwise and row-wise ops', () => {
  it('add (same shape and broadcast row) and scale', async () => {
    await onEachPath(async (path) => {
      for (const n of SIZES) {
        const rows = 3;
        const a = randomArray(rows * n);
        const b = randomArray(rows * n);
        const row = randomArray(n);
        const sum = await add(Tensor.fromArray(a, [rows, n]), Tensor.fromArray(b, [rows, n]));
        expectClose(sum.toFloat32Array(), a.map((v, i) => v + b[i]!), 0, 1e-7, `${path} add ${n}`);
        const bcast = await add(Tensor.fromArray(a, [rows, n]), Tensor.fromArray(row, [n]));
        expectClose(bcast.toFloat32Array(), a.map((v, i) => v + row[i % n]!), 0, 1e-7, `${path} add row ${n}`);
        const scaled = await scale(Tensor.fromArray(a, [rows, n]), -2.5);
        expectClose(scaled.toFloat32Array(), a.map((v) => v * -2.5), 0, 1e-7, `${path} scale ${n}`);
      }
    });
  });

  it('GELU and its derivative over a wide range', async () => {
    await onEachPath(async (path) => {
      for (const n of [...SIZES, 40000]) {
        const x = randomArray(n, 8);
        const dy = randomArray(n);
        const y = await gelu(Tensor.fromArray(x, [n]));
        expectClose(y.toFloat32Array(), Array.from(x, ref.gelu), 1e-6, 2e-6, `${path} gelu ${n}`);
        const dx = await backward.geluBackward(Tensor.fromArray(x, [n]), Tensor.fromArray(dy, [n]));
        expectClose(dx.toFloat32Array(), Array.from(x, (v, i) => dy[i]! * ref.geluDerivative(v)), 1e-6, 2e-6, `${path} gelu' ${n}`);
      }
    });
  });

  it('softmax over rows, forward and backward', async () => {
    await onEachPath(async (path) => {
      for (const cols of SIZES) {
        for (const rows of [1, 7, 197]) {
          const x = randomArray(rows * cols, 10);
          const dy = randomArray(rows * cols);
          const y = await softmax(Tensor.fromArray(x, [rows, cols]));
          const want = ref.softmaxRows(x, rows, cols);
          expectClose(y.toFloat32Array(), want, 1e-7, 2e-6, `${path} softmax ${rows}x${cols}`);
          const dx = await backward.softmaxBackward(y, Tensor.fromArray(dy, [rows, cols]));
          expectClose(dx.toFloat32Array(), ref.softmaxRowsBackward(want, dy, rows, cols), 1e-6, 1e-5, `${path} softmax' ${rows}x${cols}`);
        }
      }
    });
  });

  it('softmax of large logits does not overflow, and a NaN row stays NaN', async () => {
    const y = (await softmax(Tensor.fromArray([1000, 1001, -1e30, 0], [1, 4]))).toFloat32Array();
    expectClose(y, ref.softmaxRows([1000, 1001, -1e30, 0], 1, 4), 1e-7, 1e-6, 'large');
    const n = (await softmax(Tensor.fromArray([1, Number.NaN, 2], [1, 3]))).toFloat32Array();
    if (!n.every(Number.isNaN)) throw new Error(`NaN row gave ${n}`);
  });

  it('layerNorm, forward and backward', async () => {
    await onEachPath(async (path) => {
      for (const cols of SIZES) {
        for (const rows of [1, 7, 197]) {
          // An offset mean checks that the variance is computed stably (two passes).
          const x = randomArray(rows * cols, 3).map((v) => v + 50);
          const gamma = randomArray(cols);
          const beta = randomArray(cols);
          const dy = randomArray(rows * cols);
          const eps = 1e-6;
          const { y, mean, rstd } = await layerNormWithStats(
            Tensor.fromArray(x, [rows, cols]),
            Tensor.fromArray(gamma, [cols]),
            Tensor.fromArray(beta, [cols]),
            { eps },
          );
          const want = ref.layerNormRows(x, gamma, beta, rows, cols, eps);
          // cols = 1 normalises to exactly 0: only the absolute tolerance matters there.
          expectClose(y.toFloat32Array(), want.y, 2e-5, 2e-5, `${path} layerNorm ${rows}x${cols}`);
          expectClose(mean.toFloat32Array(), want.mean, 1e-5, 1e-6, `${path} mean`);
          const grads = await backward.layerNormBackward(
            Tensor.fromArray(x, [rows, cols]),
            Tensor.fromArray(gamma, [cols]),
            mean,
            rstd,
            Tensor.fromArray(dy, [rows, cols]),
          );
          const wantGrads = ref.layerNormRowsBackward(x, gamma, dy, rows, cols, eps);
          const scaleDx = cols === 1 ? 1e3 : 1; // rstd = 1/sqrt(eps) for a single column
          expectClose(grads.dx.toFloat32Array(), wantGrads.dx, 5e-5 * scaleDx, 1e-4, `${path} layerNorm dx ${rows}x${cols}`);
          expectClose(grads.dweight.toFloat32Array(), wantGrads.dgamma, 1e-4 * Math.sqrt(rows), 1e-4, `${path} dgamma`);
          expectClose(grads.dbias.toFloat32Array(), wantGrads.dbeta, 1e-5 * Math.sqrt(rows), 1e-5, `${path} dbeta`);
        }
      }
    });
  });

  it('layerNormBackward adds the gradient that passes around the norm (dresidual) to dx', async () => {
    await onEachPath(async (path) => {
      for (const [rows, cols] of [[7, 1153], [197, 384], [3, 5]] as const) {
        const x = randomArray(rows * cols, 3);
        const gamma = randomArray(cols);
        const dy = randomArray(rows * cols);
        const around = randomArray(rows * cols, 2);
        const eps = 1e-6;
        const { mean, rstd } = await layerNormWithStats(Tensor.fromArray(x, [rows, cols]), Tensor.fromArray(gamma, [cols]), Tensor.fromArray(randomArray(cols), [cols]), { eps });
        const names = ['x', 'weight', 'mean', 'rstd', 'dy', 'dresidual'];
        const inputs = [Tensor.fromArray(x, [rows, cols]), Tensor.fromArray(gamma, [cols]), mean, rstd, Tensor.fromArray(dy, [rows, cols]), Tensor.fromArray(around, [rows, cols])];
        const [dx, dgamma, dbeta] = await runAsync('layerNormBackward', names, inputs);
        const want = ref.layerNormRowsBackward(x, gamma, dy, rows, cols, eps);
        expectClose(dx!.toFloat32Array(), want.dx.map((v, i) => v + around[i]!), 5e-5, 1e-4, `${path} dx + dresidual ${rows}x${cols}`);
        expectClose(dgamma!.toFloat32Array(), want.dgamma, 1e-4 * Math.sqrt(rows), 1e-4, `${path} dgamma`);
        expectClose(dbeta!.toFloat32Array(), want.dbeta, 1e-5 * Math.sqrt(rows), 1e-5, `${path} dbeta`);
      }
    });
  });

  it('sync and async forms give identical results', async () => {
    const x = Tensor.fromArray(randomArray(1153), [1153]);
    const a = geluSync(x).toFloat32Array();
    const b = (await gelu(x)).toFloat32Array();
    if (!a.every((v, i) => Object.is(v, b[i]))) throw new Error('geluSync differs from gelu');
  });
});
