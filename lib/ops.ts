// The first ops on tensors. Each returns a Promise and runs off the JavaScript thread; each has a
// *Sync twin that runs on the calling thread, for work known to be small. Shapes are checked in
// the native op table and errors name the op, the input and what was expected.
import { native, type Attrs } from './native.js';
import { Tensor } from './tensor.js';
import { notATensor } from './tensor_argument.js';
import { DisposedError, InvalidArgTypeError, InvalidArgValueError } from './errors.js';

type Input = Tensor | null | undefined;

function handles(op: string, names: string[], inputs: Input[]) {
  return inputs.map((t, i) => {
    if (t === undefined || t === null) return null;
    if (!(t instanceof Tensor)) throw new InvalidArgTypeError(`${op}: ${names[i]} must be a Tensor, ${notATensor(t)}`);
    if (t.disposed) throw new DisposedError(`${op}: ${names[i]} has been disposed: a tensor cannot be used after dispose()`);
    return t.handle;
  });
}


/** @internal Runs a native op asynchronously. */
export async function runAsync(op: string, names: string[], inputs: Input[], attrs: Attrs = {}): Promise<Tensor[]> {
  const out = await native.runOp(op, handles(op, names, inputs), attrs, true);
  return out.map((h) => new Tensor(h));
}

/** @internal Runs a native op on the calling thread. */
export function runSync(op: string, names: string[], inputs: Input[], attrs: Attrs = {}): Tensor[] {
  return native.runOp(op, handles(op, names, inputs), attrs, false).map((h) => new Tensor(h));
}

function first(tensors: Tensor[]): Tensor {
  return tensors[0]!;
}

export interface MatmulOptions {
  /** Use a transposed: a is [..., K, M]. */
  transA?: boolean;
  /** Use b transposed: b is [..., N, K]. */
  transB?: boolean;
  /** Scales the product. */
  alpha?: number;
}

function matmulAttrs(options: MatmulOptions): Attrs {
  return { transA: options.transA ?? false, transB: options.transB ?? false, alpha: options.alpha ?? 1 };
}

/**
 * `alpha * a @ b`. a is [..., M, K]; b is [K, N] (shared by the batch) or [..., K, N] with a's batch
 * dimensions. Returns [..., M, N].
 */
export async function matmul(a: Tensor, b: Tensor, options: MatmulOptions = {}): Promise<Tensor> {
  return first(await runAsync('matmul', ['a', 'b'], [a, b], matmulAttrs(options)));
}
export function matmulSync(a: Tensor, b: Tensor, options: MatmulOptions = {}): Tensor {
  return first(runSync('matmul', ['a', 'b'], [a, b], matmulAttrs(options)));
}

export interface LinearOptions {
  /** [out], added to every row. */
  bias?: Tensor;
  /** Applied after the bias. */
  activation?: 'none' | 'gelu';
  /** [..., out], added last (a residual connection). */
  residual?: Tensor;
}

function linearAttrs(options: LinearOptions): Attrs {
  const activation = options.activation ?? 'none';
  if (activation !== 'none' && activation !== 'gelu') {
    throw new InvalidArgTypeError(`linear: activation '${String(activation)}' is unknown, expected 'none' or 'gelu'`);
  }
  return { gelu: activation === 'gelu' };
}

const linearInputs = ['x', 'weight', 'options.bias', 'options.residual'];

/**
 * A linear layer as in PyTorch: `activation(x @ weightᵀ + bias) + residual`, with weight [out, in]
 * and x [..., in]; one fused GEMM that writes its output once. Returns [..., out].
 */
export async function linear(x: Tensor, weight: Tensor, options: LinearOptions = {}): Promise<Tensor> {
  const attrs = linearAttrs(options);
  return first(await runAsync('linear', linearInputs, [x, weight, options.bias, options.residual], attrs));
}
export function linearSync(x: Tensor, weight: Tensor, options: LinearOptions = {}): Tensor {
  const attrs = linearAttrs(options);
  return first(runSync('linear', linearInputs, [x, weight, options.bias, options.residual], attrs));
}

/** a + b, where b has a's shape or a trailing part of it (repeated over the leading axes). */
export async function add(a: Tensor, b: Tensor): Promise<Tensor> {
  return first(await runAsync('add', ['a', 'b'], [a, b]));
}
export function addSync(a: Tensor, b: Tensor): Tensor {
  return first(runSync('add', ['a', 'b'], [a, b]));
}

function checkScale(s: number): Attrs {
  if (typeof s !== 'number' || !Number.isFinite(s)) throw new InvalidArgTypeError(`scale: factor must be a finite number, got ${String(s)}`);
  return { scale: s };
}

/** a * s. */
export async function scale(a: Tensor, s: number): Promise<Tensor> {
  return first(await runAsync('scale', ['a'], [a], checkScale(s)));
}
export function scaleSync(a: Tensor, s: number): Tensor {
  return first(runSync('scale', ['a'], [a], checkScale(s)));
}

/** Exact (erf) GELU, elementwise. */
export async function gelu(x: Tensor): Promise<Tensor> {
  return first(await runAsync('gelu', ['x'], [x]));
}
export function geluSync(x: Tensor): Tensor {
  return first(runSync('gelu', ['x'], [x]));
}

/** Softmax over the last axis. */
export async function softmax(x: Tensor): Promise<Tensor> {
  return first(await runAsync('softmax', ['x'], [x]));
}
export function softmaxSync(x: Tensor): Tensor {
  return first(runSync('softmax', ['x'], [x]));
}

export interface LayerNormOptions {
  /** Added to the variance; 1e-6 as in timm's ViT. */
  eps?: number;
}

export interface LayerNormResult {
  y: Tensor;
  /** Per-row mean and 1/sqrt(var + eps), kept for the backward pass. */
  mean: Tensor;
  rstd: Tensor;
}

function layerNormAttrs(options: LayerNormOptions): Attrs {
  const eps = options.eps ?? 1e-6;
  if (typeof eps !== 'number' || !(eps > 0) || !Number.isFinite(eps)) throw new InvalidArgValueError(`layerNorm: eps must be a positive number, got ${String(eps)}`);
  return { eps };
}

const layerNormInputs = ['x', 'weight', 'bias'];

/** LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * weight + bias. */
export async function layerNorm(x: Tensor, weight: Tensor, bias: Tensor, options: LayerNormOptions = {}): Promise<Tensor> {
  const [y, mean, rstd] = await runAsync('layerNorm', layerNormInputs, [x, weight, bias], layerNormAttrs(options));
  mean!.dispose();
  rstd!.dispose();
  return y!;
}
export function layerNormSync(x: Tensor, weight: Tensor, bias: Tensor, options: LayerNormOptions = {}): Tensor {
  const [y, mean, rstd] = runSync('layerNorm', layerNormInputs, [x, weight, bias], layerNormAttrs(options));
  mean!.dispose();
  rstd!.dispose();
  return y!;
}
/** LayerNorm that also returns the statistics its backward pass needs. */
export async function layerNormWithStats(x: Tensor, weight: Tensor, bias: Tensor, options: LayerNormOptions = {}): Promise<LayerNormResult> {
  const [y, mean, rstd] = await runAsync('layerNorm', layerNormInputs, [x, weight, bias], layerNormAttrs(options));
  return { y: y!, mean: mean!, rstd: rstd! };
}
