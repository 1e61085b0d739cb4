// The public Tensor: a float32 array with a shape, living in native memory (host memory, or GPU
// memory after .to('cuda')). Ops take and return Tensors and run on the device of their inputs;
// data moves in and out as Float32Array. dispose() frees the memory now; a tensor that is never
// disposed is freed when it is garbage-collected.
import { native, type NativeTensor } from './native.js';
import { DisposedError, InvalidArgTypeError, InvalidArgValueError, UnsupportedError } from './errors.js';

export type DType = 'float32' | 'bfloat16' | 'float16';
export type Device = 'cpu' | 'cuda';

/** The most dimensions a tensor may have. */
export const MAX_RANK = 8;

function checkShape(shape: unknown, what = 'shape'): number[] {
  if (!Array.isArray(shape)) throw new InvalidArgTypeError(`${what} must be an array of dimensions, got ${typeof shape}`);
  if (shape.length > MAX_RANK) throw new InvalidArgValueError(`${what} has ${shape.length} dimensions, expected at most ${MAX_RANK}`);
  shape.forEach((d, i) => {
    if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
      throw new InvalidArgTypeError(`${what}[${i}] is ${typeof d === 'string' ? `'${d}' (a string)` : String(d)}: expected a non-negative integer`);
    }
  });
  return [...(shape as number[])];
}

/**
 * A plain array's values must be numbers: Float32Array.from would make '1' a 1, and undefined, an
 * object or a hole a NaN, without a word.
 */
function checkNumbers(data: readonly unknown[]): number[] {
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    if (typeof v !== 'number') {
      const got = v === undefined ? (i in data ? 'undefined' : 'a hole (undefined)') : v === null ? 'null' : typeof v === 'string' ? `'${v}' (a string)` : `${typeof v === 'object' ? 'an' : 'a'} ${typeof v}`;
      throw new InvalidArgTypeError(`Tensor.fromArray: data[${i}] is ${got}, expected a number`);
    }
  }
  return data as number[];
}

/** Number of elements of a shape. */
export function shapeSize(shape: readonly number[]): number {
  return shape.reduce((n, d) => n * d, 1);
}

export class Tensor {
  /** @internal */
  readonly handle: NativeTensor;

  /** @internal Wraps a native handle; use the static constructors instead. */
  constructor(handle: NativeTensor) {
    this.handle = handle;
  }

  /** A tensor holding a copy of `data` (a Float32Array, or numbers), viewed with `shape`. */
  static fromArray(data: Float32Array | readonly number[], shape: readonly number[]): Tensor {
    const dims = checkShape(shape);
    let values: Float32Array;
    if (data instanceof Float32Array) values = data;
    else if (Array.isArray(data)) values = Float32Array.from(checkNumbers(data));
    else {
      const kind = ArrayBuffer.isView(data) ? (data as object).constructor.name : typeof data;
      throw new InvalidArgTypeError(`Tensor.fromArray: data must be a Float32Array or an array of numbers (dtype float32), got ${kind}`);
    }
    const size = shapeSize(dims);
    if (values.length !== size) {
      throw new InvalidArgValueError(`Tensor.fromArray: data has ${values.length} elements, shape [${dims.join(', ')}] needs ${size}`);
    }
    return new Tensor(new native.NativeTensor(dims, values));
  }

  /** A tensor of zeros, in host memory or on `device`. */
  static zeros(shape: readonly number[], device: Device = 'cpu'): Tensor {
    const host = new Tensor(new native.NativeTensor(checkShape(shape)));
    if (device === 'cpu') return host;
    try {
      return host.to(device);
    } finally {
      host.dispose();
    }
  }

  /** A tensor of `value` everywhere. */
  static full(shape: readonly number[], value: number): Tensor {
    const dims = checkShape(shape);
    return Tensor.fromArray(new Float32Array(shapeSize(dims)).fill(value), dims);
  }

  get shape(): number[] {
    return this.live().shape;
  }
  get rank(): number {
    return this.shape.length;
  }
  /** Number of elements. */
  get size(): number {
    return this.live().numel;
  }
  /** The element type: float32, or bfloat16 / float16 for tensors on the GPU. */
  get dtype(): DType {
    return this.live().dtype;
  }
  get device(): Device {
    return this.live().device;
  }
  get disposed(): boolean {
    return this.handle.disposed;
  }

  /** A copy of the values, row-major. */
  toFloat32Array(): Float32Array {
    return this.live().toFloat32Array();
  }

  /**
   * The values without a copy: a Float32Array over the tensor's native memory. Writes through it
   * change the tensor. It keeps the memory alive on its own, so it stays valid after dispose();
   * do not write to it while an async op that reads this tensor is running.
   */
  view(): Float32Array {
    return this.live().view();
  }

  /** Overwrites the values from a Float32Array of the same size. */
  set(data: Float32Array): void {
    if (!(data instanceof Float32Array)) throw new InvalidArgTypeError('Tensor.set: data must be a Float32Array (dtype float32)');
    this.live().copyFrom(data);
  }

  /** The same values viewed with another shape of the same size; shares memory (no copy). */
  reshape(shape: readonly number[]): Tensor {
    return new Tensor(this.live().reshape(checkShape(shape)));
  }

  /**
   * A copy on `device` ('cpu' or 'cuda'), or this tensor when it is there already. Moving a
   * 16-bit GPU tensor to the CPU gives float32. Throws, saying why, when CUDA is not available.
   */
  to(device: Device): Tensor {
    if (device !== 'cpu' && device !== 'cuda') {
      throw new InvalidArgTypeError(`Tensor.to: unknown device '${String(device)}', expected 'cpu' or 'cuda'`);
    }
    const handle = this.live();
    if (handle.device === device) return this;
    if (device === 'cuda') {
      const cuda = native.cudaAvailable();
      if (!cuda.available) throw new UnsupportedError(`Tensor.to('cuda'): CUDA is not available: ${cuda.reason ?? 'unknown reason'}`);
    }
    return new Tensor(handle.to(device));
  }

  /** Frees the native memory now. Using the tensor afterwards throws; disposing twice is fine. */
  dispose(): void {
    this.handle.dispose();
  }

  toString(): string {
    return this.disposed ? 'Tensor(disposed)' : `Tensor(${this.dtype}, [${this.shape.join(', ')}], ${this.device})`;
  }

  private live(): NativeTensor {
    if (this.handle.disposed) throw new DisposedError('Tensor has been disposed: it cannot be used after dispose()');
    return this.handle;
  }
}
