// Float64 references for the attention kernels (docs/algorithms.md sections 1-3), one head at a time:
// q, k, v are N x d row-major. Written for obviousness: full N x N matrices are fine here.
// Every backward here is itself checked against finite differences (attention_reference.test.ts).

export type Vec = Float64Array;
const EPS = 1e-12;

function rowNorms(x: ArrayLike<number>, N: number, d: number): Vec {
  const out = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    let s = 0;
    for (let i = 0; i < d; i++) s += x[n * d + i]! ** 2;
    out[n] = Math.sqrt(s);
  }
  return out;
}

function normalizeRows(x: ArrayLike<number>, norms: Vec, N: number, d: number): Vec {
  const out = new Float64Array(N * d);
  for (let n = 0; n < N; n++) for (let i = 0; i < d; i++) out[n * d + i] = x[n * d + i]! / Math.max(norms[n]!, EPS);
  return out;
}

/** Backward of x -> x / max(|x|, eps) for one row set: (g - xhat (xhat.g)) / |x| (or g / eps when clamped). */
function normalizeRowsBackward(xhat: Vec, norms: Vec, g: Vec, N: number, d: number): Vec {
  const out = new Float64Array(N * d);
  for (let n = 0; n < N; n++) {
    if (norms[n]! <= EPS) {
      for (let i = 0; i < d; i++) out[n * d + i] = g[n * d + i]! / EPS;
      continue;
    }
    let dot = 0;
    for (let i = 0; i < d; i++) dot += xhat[n * d + i]! * g[n * d + i]!;
    for (let i = 0; i < d; i++) out[n * d + i] = (g[n * d + i]! - xhat[n * d + i]! * dot) / norms[n]!;
  }
  return out;
}

/** Row-wise softmax of scale * q k^T (N x N). */
export function attentionProbabilities(q: ArrayLike<number>, k: ArrayLike<number>, N: number, d: number, scale: number): Vec {
  const p = new Float64Array(N * N);
  for (let n = 0; n < N; n++) {
    let max = -Infinity;
    for (let m = 0; m < N; m++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += q[n * d + i]! * k[m * d + i]!;
      p[n * N + m] = s * scale;
      max = Math.max(max, s * scale);
    }
    let sum = 0;
    for (let m = 0; m < N; m++) sum += p[n * N + m] = Math.exp(p[n * N + m]! - max);
    for (let m = 0; m < N; m++) p[n * N + m]! /= sum;
  }
  return p;
}

/** Gradients of the logits scale * q k^T into q and k, from dP (gradient of the probabilities P). */
function softmaxLogitsBackward(q: ArrayLike<number>, k: ArrayLike<number>, p: Vec, dp: Vec, N: number, d: number, scale: number) {
  const dq = new Float64Array(N * d);
  const dk = new Float64Array(N * d);
  for (let n = 0; n < N; n++) {
    let dot = 0;
    for (let m = 0; m < N; m++) dot += p[n * N + m]! * dp[n * N + m]!;
    for (let m = 0; m < N; m++) {
      const ds = p[n * N + m]! * (dp[n * N + m]! - dot) * scale;
      if (ds === 0) continue;
      for (let i = 0; i < d; i++) {
        dq[n * d + i]! += ds * k[m * d + i]!;
        dk[m * d + i]! += ds * q[n * d + i]!;
      }
    }
  }
  return { dq, dk };
}

// ---- 1. softmax attention ----

export function softmaxAttention(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, N: number, d: number, scale = 1 / Math.sqrt(d)) {
  const p = attentionProbabilities(q, k, N, d, scale);
  const y = new Float64Array(N * d);
  const lse = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < N; m++) for (let i = 0; i < d; i++) y[n * d + i]! += p[n * N + m]! * v[m * d + i]!;
    let max = -Infinity;
    const logits: number[] = [];
    for (let m = 0; m < N; m++) {
      let s = 0;
      for (let i = 0; i < d; i++) s += q[n * d + i]! * k[m * d + i]!;
      logits.push(s * scale);
      max = Math.max(max, s * scale);
    }
    lse[n] = max + Math.log(logits.reduce((acc, s) => acc + Math.exp(s - max), 0));
  }
  return { y, lse };
}

export function softmaxAttentionBackward(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, dy: ArrayLike<number>, N: number, d: number, scale = 1 / Math.sqrt(d)) {
  const p = attentionProbabilities(q, k, N, d, scale);
  const dp = new Float64Array(N * N);
  const dv = new Float64Array(N * d);
  for (let n = 0; n < N; n++) {
    for (let m = 0; m < N; m++) {
      let s = 0;
      for (let i = 0; i < d; i++) {
        s += dy[n * d + i]! * v[m * d + i]!;
        dv[m * d + i]! += p[n * N + m]! * dy[n * d + i]!;
      }
      dp[n * N + m] = s;
    }
  }
  const { dq, dk } = softmaxLogitsBackward(q, k, p, dp, N, d, scale);
  return { dq, dk, dv };
}

// ---- 2 and 3. linear-angular attention with the depthwise convolution and the aux branch ----

export interface LinearAngularOptions {
  /** 'tokens': 1-D kernel (K) along the token axis; 'spatial': K x K over the patch grid. */
  form: 'tokens' | 'spatial';
  /** Kernel size K (odd). */
  kernel: number;
  /** The auxiliary masked softmax branch, with threshold tau and L1 weight l1. */
  aux?: { tau: number; l1?: number; scale?: number };
}

/** For each output token n, the (input token, weight index) pairs of the convolution. */
function convTaps(N: number, opts: LinearAngularOptions): Array<Array<[number, number]>> {
  const K = opts.kernel;
  const c = (K - 1) / 2;
  const taps: Array<Array<[number, number]>> = [];
  if (opts.form === 'tokens') {
    for (let n = 0; n < N; n++) {
      const list: Array<[number, number]> = [];
      for (let t = 0; t < K; t++) {
        const m = n + t - c;
        if (m >= 0 && m < N) list.push([m, t]);
      }
      taps.push(list);
    }
    return taps;
  }
  const side = Math.round(Math.sqrt(N - 1));
  if (side * side !== N - 1) throw new Error(`spatial form needs N - 1 to be a square, got N = ${N}`);
  taps.push([]); // the class token has no convolution term
  for (let i = 0; i < side; i++) {
    for (let j = 0; j < side; j++) {
      const list: Array<[number, number]> = [];
      for (let a = 0; a < K; a++) {
        for (let b = 0; b < K; b++) {
          const ii = i + a - c;
          const jj = j + b - c;
          if (ii >= 0 && ii < side && jj >= 0 && jj < side) list.push([1 + ii * side + jj, a * K + b]);
        }
      }
      taps.push(list);
    }
  }
  return taps;
}

/** Kept entries of the aux softmax: P = M * A with M = (A > tau). */
function maskedAux(q: ArrayLike<number>, k: ArrayLike<number>, N: number, d: number, aux: NonNullable<LinearAngularOptions['aux']>) {
  const a = attentionProbabilities(q, k, N, d, aux.scale ?? 1 / Math.sqrt(d));
  const p = a.map((x) => (x > aux.tau ? x : 0));
  return { a, p };
}

/** Forward of one head; w has K (tokens) or K*K (spatial) weights. Returns y and the L1 term sum(M*A). */
export function linearAngular(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, w: ArrayLike<number>, N: number, d: number, opts: LinearAngularOptions) {
  const qn = rowNorms(q, N, d);
  const kn = rowNorms(k, N, d);
  const qh = normalizeRows(q, qn, N, d);
  const kh = normalizeRows(k, kn, N, d);
  const S = new Float64Array(d * d);
  for (let n = 0; n < N; n++) for (let a = 0; a < d; a++) for (let b = 0; b < d; b++) S[a * d + b]! += kh[n * d + a]! * v[n * d + b]!;
  const z = new Float64Array(N * d);
  for (let n = 0; n < N; n++) {
    for (let b = 0; b < d; b++) {
      let s = 0;
      for (let a = 0; a < d; a++) s += qh[n * d + a]! * S[a * d + b]!;
      z[n * d + b] = 0.5 * v[n * d + b]! + s / Math.PI;
    }
  }
  let l1 = 0;
  if (opts.aux) {
    const { p } = maskedAux(q, k, N, d, opts.aux);
    for (let n = 0; n < N; n++) {
      for (let m = 0; m < N; m++) {
        const pm = p[n * N + m]!;
        l1 += pm;
        if (pm) for (let i = 0; i < d; i++) z[n * d + i]! += pm * v[m * d + i]!;
      }
    }
  }
  const zn = rowNorms(z, N, d);
  const u = normalizeRows(z, zn, N, d);
  const y = Float64Array.from(u);
  const taps = convTaps(N, opts);
  for (let n = 0; n < N; n++) for (const [m, t] of taps[n]!) for (let i = 0; i < d; i++) y[n * d + i]! += w[t]! * v[m * d + i]!;
  return { y, l1, z, u, zn, qh, kh, qn, kn, S };
}

/** Gradients of sum(dy * y) + l1Weight * sum(M * A) for one head. */
export function linearAngularBackward(q: ArrayLike<number>, k: ArrayLike<number>, v: ArrayLike<number>, w: ArrayLike<number>, dy: ArrayLike<number>, N: number, d: number, opts: LinearAngularOptions) {
  const f = linearAngular(q, k, v, w, N, d, opts);
  const g = Float64Array.from(dy);
  const dv = new Float64Array(N * d);
  const dw = new Float64Array(w.length);
  const taps = convTaps(N, opts);
  for (let n = 0; n < N; n++) {
    for (const [m, t] of taps[n]!) {
      for (let i = 0; i < d; i++) {
        dw[t]! += g[n * d + i]! * v[m * d + i]!;
        dv[m * d + i]! += w[t]! * g[n * d + i]!;
      }
    }
  }
  const dz = normalizeRowsBackward(f.u, f.zn, g, N, d);
  for (let i = 0; i < N * d; i++) dv[i]! += 0.5 * dz[i]!;
  const dqh = new Float64Array(N * d);
  const dS = new Float64Array(d * d);
  for (let n = 0; n < N; n++) {
    for (let a = 0; a < d; a++) {
      let s = 0;
      for (let b = 0; b < d; b++) {
        s += dz[n * d + b]! * f.S[a * d + b]!;
        dS[a * d + b]! += (f.qh[n * d + a]! * dz[n * d + b]!) / Math.PI;
      }
      dqh[n * d + a] = s / Math.PI;
    }
  }
  const dkh = new Float64Array(N * d);
  for (let n = 0; n < N; n++) {
    for (let a = 0; a < d; a++) {
      let s = 0;
      for (let b = 0; b < d; b++) {
        s += v[n * d + b]! * dS[a * d + b]!;
        dv[n * d + b]! += f.kh[n * d + a]! * dS[a * d + b]!;
      }
      dkh[n * d + a] = s;
    }
  }
  const dq = normalizeRowsBackward(f.qh, f.qn, dqh, N, d);
  const dk = normalizeRowsBackward(f.kh, f.kn, dkh, N, d);
  if (opts.aux) {
    const scale = opts.aux.scale ?? 1 / Math.sqrt(d);
    const l1 = opts.aux.l1 ?? 0;
    const { a, p } = maskedAux(q, k, N, d, opts.aux);
    const da = new Float64Array(N * N);
    for (let n = 0; n < N; n++) {
      for (let m = 0; m < N; m++) {
        if (!p[n * N + m]) continue;
        let s = 0;
        for (let i = 0; i < d; i++) {
          s += dz[n * d + i]! * v[m * d + i]!;
          dv[m * d + i]! += p[n * N + m]! * dz[n * d + i]!;
        }
        da[n * N + m] = s + l1;
      }
    }
    const logits = softmaxLogitsBackward(q, k, a, da, N, d, scale);
    for (let i = 0; i < N * d; i++) {
      dq[i]! += logits.dq[i]!;
      dk[i]! += logits.dk[i]!;
    }
  }
  return { dq, dk, dv, dw };
}
