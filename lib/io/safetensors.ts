// safetensors files (the format of Hugging Face and timm checkpoints): an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte range, then the data.
// Reading validates everything before allocating anything large, so a truncated or hostile file
// gets an error naming the problem, never a crash or a huge allocation. Writing is atomic.
import { open } from 'node:fs/promises';

import { writeFileAtomic } from './atomic_write.js';

/** One tensor as stored: values are always returned as float32. */
export interface StoredTensor {
  shape: number[];
  data: Float32Array;
  /** The dtype in the file (F32, F16, BF16 or F64); values were converted to float32. */
  dtype: DType;
}

export interface SafetensorsContent {
  tensors: Map<string, StoredTensor>;
  /** The header's `__metadata__`: string keys to string values. */
  metadata: Record<string, string>;
}

export type DType = 'F32' | 'F16' | 'BF16' | 'F64';
const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

/** The largest JSON header accepted (the format's reference implementation uses 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;

export class SafetensorsError extends Error {
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(`${path}: ${message}`, options);
    this.name = 'SafetensorsError';
  }
}

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** Parses and validates a header against the size of the data that follows it. */
function parseHeader(path: string, json: string, dataBytes: number): { entries: Entry[]; metadata: Record<string, string> } {
  const fail = (message: string): never => {
    throw new SafetensorsError(path, message);
  };
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch (error) {
    fail(`the header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header must be a JSON object');
  const metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('__metadata__ must be an object of strings');
      for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${key} must be a string, got ${typeof v}`);
        metadata[key] = v as string;
      }
      continue;
    }
    const info = value as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof info !== 'object' || info === null) fail(`tensor '${name}' must be described by an object`);
    if (typeof info.dtype !== 'string' || !(info.dtype in DTYPE_BYTES)) {
      fail(`tensor '${name}' has dtype ${JSON.stringify(info.dtype)}, expected one of ${Object.keys(DTYPE_BYTES).join(', ')}`);
    }
    const dtype = info.dtype as DType;
    const shape = info.shape;
    if (!Array.isArray(shape) || shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      fail(`tensor '${name}' has shape ${JSON.stringify(shape)}, expected an array of non-negative integers`);
    }
    const offsets = info.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || offsets.some((o) => !Number.isSafeInteger(o) || o < 0)) {
      fail(`tensor '${name}' has data_offsets ${JSON.stringify(offsets)}, expected [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    const elements = (shape as number[]).reduce((n, d) => n * d, 1);
    if (end < begin || end > dataBytes) {
      fail(`tensor '${name}' has data_offsets [${begin}, ${end}] outside the ${dataBytes} bytes of data (truncated file?)`);
    }
    if (!Number.isSafeInteger(elements) || elements * DTYPE_BYTES[dtype] !== end - begin) {
      fail(`tensor '${name}' has shape [${(shape as number[]).join(', ')}] of ${dtype} (${elements * DTYPE_BYTES[dtype]} bytes) but data_offsets cover ${end - begin} bytes`);
    }
    entries.push({ name, dtype, shape: shape as number[], begin, end });
  }
  // Byte ranges must not overlap (two names for one memory would make writes alias).
  const sorted = [...entries].sort((a, b) => a.begin - b.begin);
  for (let i = 1; i < sorted.length; i++) {
    if (sorted[i]!.begin < sorted[i - 1]!.end) fail(`tensors '${sorted[i - 1]!.name}' and '${sorted[i]!.name}' overlap in the data`);
  }
  return { entries, metadata };
}

function toFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  const out = new Float32Array(n);
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      break;
    case 'BF16': {
      // bfloat16 is the top half of a float32.
      const widened = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) widened[i] = view.getUint16(i * 2, true) << 16;
      break;
    }
    case 'F16':
      for (let i = 0; i < n; i++) out[i] = halfToFloat(view.getUint16(i * 2, true));
      break;
  }
  return out;
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? Number.NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Reads a safetensors file; every tensor comes back as float32. */
export async function readSafetensors(path: string): Promise<SafetensorsContent> {
  const file = await open(path, 'r').catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SafetensorsError(path, 'no such file', { cause: error });
    if (code === 'EACCES' || code === 'EPERM') throw new SafetensorsError(path, 'no permission to read it', { cause: error });
    throw error;
  });
  try {
    const info = await file.stat();
    if (info.isDirectory()) throw new SafetensorsError(path, 'a folder, not a safetensors file');
    const size = info.size;
    if (size < 8) throw new SafetensorsError(path, `the file has ${size} bytes, too short for a safetensors header`);
    const prefix = Buffer.alloc(8);
    await file.read(prefix, 0, 8, 0);
    const headerBytes = prefix.readBigUInt64LE(0);
    if (headerBytes > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
      throw new SafetensorsError(path, `the header claims ${headerBytes} bytes but at most ${Math.min(MAX_HEADER_BYTES, size - 8)} are possible (truncated or not a safetensors file)`);
    }
    const header = Buffer.alloc(Number(headerBytes));
    await file.read(header, 0, header.length, 8);
    const dataStart = 8 + header.length;
    const { entries, metadata } = parseHeader(path, header.toString('utf8'), size - dataStart);
    const tensors = new Map<string, StoredTensor>();
    for (const e of entries) {
      const bytes = new Uint8Array(e.end - e.begin);
      const { bytesRead } = await file.read(bytes, 0, bytes.length, dataStart + e.begin);
      if (bytesRead !== bytes.length) throw new SafetensorsError(path, `tensor '${e.name}' is truncated`);
      tensors.set(e.name, { shape: e.shape, data: toFloat32(bytes, e.dtype), dtype: e.dtype });
    }
    return { tensors, metadata };
  } finally {
    await file.close();
  }
}

/**
 * Writes float32 tensors and string metadata as a safetensors file, atomically (writeFileAtomic:
 * an existing file is replaced whole or not at all).
 */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, { shape: readonly number[]; data: Float32Array }> | Record<string, { shape: readonly number[]; data: Float32Array }>,
  metadata: Record<string, string> = {},
): Promise<void> {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new Error(`writeSafetensors: '__metadata__' is not a valid tensor name`);
    const elements = t.shape.reduce((n, d) => n * d, 1);
    if (elements !== t.data.length) throw new Error(`writeSafetensors: tensor '${name}' has ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    header[name] = { dtype: 'F32', shape: [...t.shape], data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  // Pad with spaces so that the data starts 8-byte aligned (allowed by the format).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length), 0);

  // Float32Array memory is little-endian on every platform Node supports.
  const data = list.map(([, t]) => new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
  await writeFileAtomic(path, [prefix, headerBytes, ...data]);
}
