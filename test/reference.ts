// Float64 reference implementations the kernels are checked against. Plain loops, written for
// obviousness rather than speed.

/** erf in float64: Taylor series near 0, continued fraction for erfc in the tails (|error| < 1e-13). */
export function erf(x: number): number {
  const a = Math.abs(x);
  let result: number;
  if (a < 2.5) {
    let term = a;
    let sum = a;
    for (let n = 1; n < 200; n++) {
      term *= (-a * a) / n;
      const add = term / (2 * n + 1);
      sum += add;
      if (Math.abs(add) < 1e-17 * Math.abs(sum)) break;
    }
    result = (2 / Math.sqrt(Math.PI)) * sum;
  } else {
    // erfc(a) = exp(-a^2)/sqrt(pi) * 1/(a + (1/2)/(a + 1/(a + (3/2)/(a + ...)))), evaluated bottom-up.
    let f = a;
    for (let n = 60; n >= 1; n--) f = a + n / 2 / f;
    result = 1 - Math.exp(-a * a) / Math.sqrt(Math.PI) / f;
  }
  return x < 0 ? -result : result;
}

export function gelu(x: number): number {
  return 0.5 * x * (1 + erf(x / Math.SQRT2));
}

export function geluDerivative(x: number): number {
  return 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI);
}

/** C = alpha * op(A) op(B), row-major, A [M,K] (or [K,M] transposed), B [K,N] (or [N,K]). */
export function matmul(
  a: ArrayLike<number>,
  b: ArrayLike<number>,
  M: number,
  N: number,
  K: number,
  { transA = false, transB = false, alpha = 1 } = {},
): Float64Array {
  const c = new Float64Array(M * N);
  for (let i = 0; i < M; i++) {
    for (let j = 0; j < N; j++) {
      let acc = 0;
      for (let k = 0; k < K; k++) {
        acc += (transA ? a[k * M + i]! : a[i * K + k]!) * (transB ? b[j * K + k]! : b[k * N + j]!);
      }
      c[i * N + j] = alpha * acc;
    }
  }
  return c;
}

export function softmaxRows(x: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const y = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let max = -Infinity;
    for (let c = 0; c < cols; c++) max = Math.max(max, x[r * cols + c]!);
    let sum = 0;
    for (let c = 0; c < cols; c++) sum += y[r * cols + c] = Math.exp(x[r * cols + c]! - max);
    for (let c = 0; c < cols; c++) y[r * cols + c]! /= sum;
  }
  return y;
}

export function softmaxRowsBackward(y: ArrayLike<number>, dy: ArrayLike<number>, rows: number, cols: number): Float64Array {
  const dx = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    let dot = 0;
    for (let c = 0; c < cols; c++) dot += y[r * cols + c]! * dy[r * cols + c]!;
    for (let c = 0; c < cols; c++) dx[r * cols + c] = y[r * cols + c]! * (dy[r * cols + c]! - dot);
  }
  return dx;
}

export function layerNormRows(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  beta: ArrayLike<number>,
  rows: number,
  cols: number,
  eps: number,
): { y: Float64Array; mean: Float64Array; rstd: Float64Array } {
  const y = new Float64Array(rows * cols);
  const mean = new Float64Array(rows);
  const rstd = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let m = 0;
    for (let c = 0; c < cols; c++) m += x[r * cols + c]!;
    m /= cols;
    let v = 0;
    for (let c = 0; c < cols; c++) v += (x[r * cols + c]! - m) ** 2;
    v /= cols;
    const s = 1 / Math.sqrt(v + eps);
    mean[r] = m;
    rstd[r] = s;
    for (let c = 0; c < cols; c++) y[r * cols + c] = (x[r * cols + c]! - m) * s * gamma[c]! + beta[c]!;
  }
  return { y, mean, rstd };
}

/** Gradients of sum(dy * layerNorm(x)) by the chain rule, in float64. */
export function layerNormRowsBackward(
  x: ArrayLike<number>,
  gamma: ArrayLike<number>,
  dy: ArrayLike<number>,
  rows: number,
  cols: number,
  eps: number,
): { dx: Float64Array; dgamma: Float64Array; dbeta: Float64Array } {
  const { mean, rstd } = layerNormRows(x, gamma, new Float64Array(cols), rows, cols, eps);
  const dx = new Float64Array(rows * cols);
  const dgamma = new Float64Array(cols);
  const dbeta = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const m = mean[r]!;
    const s = rstd[r]!;
    let sumG = 0;
    let sumGx = 0;
    for (let c = 0; c < cols; c++) {
      const xhat = (x[r * cols + c]! - m) * s;
      const g = dy[r * cols + c]! * gamma[c]!;
      sumG += g;
      sumGx += g * xhat;
      dgamma[c]! += dy[r * cols + c]! * xhat;
      dbeta[c]! += dy[r * cols + c]!;
    }
    for (let c = 0; c < cols; c++) {
      const xhat = (x[r * cols + c]! - m) * s;
      dx[r * cols + c] = s * (dy[r * cols + c]! * gamma[c]! - sumG / cols - (xhat * sumGx) / cols);
    }
  }
  return { dx, dgamma, dbeta };
}
