// safetensors files (the format of Hugging Face and timm checkpoints): an 8-byte little-endian
// header length, a JSON header naming each tensor's dtype, shape and byte range, then the data.
// Reading validates everything before allocating anything large (safetensors_header.ts; the
// tensors' float32 size against a memory budget), reads in bounded chunks, and refuses NaN and
// infinite values unless asked not to, so a truncated, damaged or hostile file gets an error naming
// the problem, never a crash, a huge allocation or weights that are silently wrong. A checksum in
// the metadata, when the writer put one there, is verified. Writing is atomic.
import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';

import { firstNonFinite, nonFiniteName } from '../finite.js';
import { budgetText, formatBytes, memoryBudgetOf } from '../memory_budget.js';
import { MAX_PARAMETER_VALUES } from '../nn/config.js';
import { writeFileAtomic } from './atomic_write.js';
import { encode16 } from './half_encoding.js';
import { DTYPE_BYTES, inDataOrder, parseHeader, type DType, type HeaderEntry } from './safetensors_header.js';
import { BadFileError, InvalidArgTypeError, InvalidArgValueError } from '../errors.js';

export type { DType } from './safetensors_header.js';

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

export interface ReadOptions {
  /** Accept NaN and infinite values (refused by default: they are how damage usually shows). */
  allowNonFinite?: boolean;
  /** The most bytes the tensors may take as float32 (default: half of this machine's memory). */
  memoryBudget?: number;
  /** @internal Bytes per read (default READ_CHUNK_BYTES); small ones exercise the chunk edges. */
  chunkBytes?: number;
}

/** The largest JSON header accepted (the format's reference implementation uses 100 MB). */
export const MAX_HEADER_BYTES = 100_000_000;
/** Bytes per read or write: no single call moves gigabytes (Node aborts on reads past 2 GiB). */
export const READ_CHUNK_BYTES = 32 * 1024 * 1024;
/** The metadata key of the content's sha256 (hex), written by writeSafetensors({ checksum: true }). */
export const CHECKSUM_KEY = 'content_sha256';

export class SafetensorsError extends BadFileError {
  constructor(path: string, message: string, options?: ErrorOptions) {
    super(`${path}: ${message}`, options);
    this.name = 'SafetensorsError';
  }
}

/**
 * The checksum covers what the file says, not only its data bytes: the metadata (but the checksum
 * itself) and each tensor's name, dtype, shape and place, then the data region in order. A changed
 * config value or a renamed tensor then fails the check just as a flipped data byte does.
 */
function startChecksum(metadata: Record<string, string>, entries: readonly HeaderEntry[]): Hash {
  const described = Object.keys(metadata)
    .filter((key) => key !== CHECKSUM_KEY)
    .sort()
    .map((key) => [key, metadata[key]]);
  const tensors = inDataOrder(entries).map((e) => [e.name, e.dtype, e.shape, e.begin, e.end]);
  return createHash('sha256').update(JSON.stringify({ metadata: described, tensors }));
}

/** Decodes little-endian values of `dtype` from `bytes` into `out` from element `at`. */
function decodeInto(bytes: Uint8Array, dtype: DType, out: Float32Array, at: number): void {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = bytes.byteLength / DTYPE_BYTES[dtype];
  switch (dtype) {
    case 'F32':
      for (let i = 0; i < n; i++) out[at + i] = view.getFloat32(i * 4, true);
      break;
    case 'F64':
      for (let i = 0; i < n; i++) out[at + i] = view.getFloat64(i * 8, true);
      break;
    case 'BF16': {
      // bfloat16 is the top half of a float32.
      const widened = new Uint32Array(out.buffer, out.byteOffset, out.length);
      for (let i = 0; i < n; i++) widened[at + i] = view.getUint16(i * 2, true) << 16;
      break;
    }
    case 'F16':
      for (let i = 0; i < n; i++) out[at + i] = halfToFloat(view.getUint16(i * 2, true));
      break;
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? Number.NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

/** Refuses a file whose tensors would not fit the budget as float32, before reading any. */
function checkBudget(entries: readonly HeaderEntry[], options: ReadOptions, fail: (message: string) => never): void {
  const budget = memoryBudgetOf(options.memoryBudget, 'readSafetensors');
  let bytes = 0;
  for (const e of entries) {
    if (e.elements > MAX_PARAMETER_VALUES) fail(`tensor '${e.name}' holds ${e.elements} values, more than one tensor can (${MAX_PARAMETER_VALUES})`);
    bytes += e.elements * 4;
  }
  if (bytes > budget) {
    fail(`its tensors need ${formatBytes(bytes)} as float32, more than ${budgetText(budget, options.memoryBudget !== undefined)}; pass { memoryBudget } to read it`);
  }
}

/**
 * One tensor's values, read `chunkBytes` at a time: float32 straight into the result's memory,
 * other dtypes through one reused buffer. Every byte read goes into `checksum`, in file order.
 */
async function readTensor(file: FileHandle, e: HeaderEntry, dataStart: number, chunkBytes: number, checksum: Hash | null, fail: (message: string) => never): Promise<Float32Array> {
  const out = new Float32Array(e.elements);
  const total = e.end - e.begin;
  // Whole elements per chunk, so that a chunk never splits a value.
  const step = Math.max(8, chunkBytes - (chunkBytes % 8));
  const scratch = e.dtype === 'F32' ? null : new Uint8Array(Math.min(step, total));
  for (let done = 0; done < total; ) {
    const length = Math.min(step, total - done);
    const target = scratch ? scratch.subarray(0, length) : new Uint8Array(out.buffer, done, length);
    const { bytesRead } = await file.read(target, 0, length, dataStart + e.begin + done);
    if (bytesRead !== length) fail(`tensor '${e.name}' is truncated (the file changed while it was read?)`);
    checksum?.update(target);
    if (scratch) decodeInto(target, e.dtype, out, done / DTYPE_BYTES[e.dtype]);
    done += length;
  }
  // Float32Array memory is little-endian on every platform Node supports: read as is.
  return out;
}

/** Reads a safetensors file; every tensor comes back as float32. */
export async function readSafetensors(path: string, options: ReadOptions = {}): Promise<SafetensorsContent> {
  const fail = (message: string): never => {
    throw new SafetensorsError(path, message);
  };
  const file = await open(path, 'r').catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new SafetensorsError(path, 'no such file', { cause: error });
    if (code === 'EACCES' || code === 'EPERM') throw new SafetensorsError(path, 'no permission to read it', { cause: error });
    throw error;
  });
  try {
    const info = await file.stat();
    if (info.isDirectory()) fail('a folder, not a safetensors file');
    const size = info.size;
    if (size < 8) fail(`the file has ${size} bytes, too short for a safetensors header`);
    const prefix = Buffer.alloc(8);
    await file.read(prefix, 0, 8, 0);
    const headerBytes = prefix.readBigUInt64LE(0);
    if (headerBytes > BigInt(Math.min(MAX_HEADER_BYTES, size - 8))) {
      fail(`the header claims ${headerBytes} bytes but at most ${Math.min(MAX_HEADER_BYTES, size - 8)} are possible (truncated or not a safetensors file)`);
    }
    const header = Buffer.alloc(Number(headerBytes));
    await file.read(header, 0, header.length, 8);
    let json = '';
    try {
      json = new TextDecoder('utf-8', { fatal: true }).decode(header);
    } catch {
      fail('the header is not valid UTF-8 text');
    }
    const dataStart = 8 + header.length;
    const { entries, metadata } = parseHeader(json, size - dataStart, fail);
    checkBudget(entries, options, fail);
    const expected = metadata[CHECKSUM_KEY];
    const checksum = expected === undefined ? null : startChecksum(metadata, entries);
    const chunkBytes = options.chunkBytes ?? READ_CHUNK_BYTES;
    const values = new Map<HeaderEntry, Float32Array>();
    for (const e of inDataOrder(entries)) values.set(e, await readTensor(file, e, dataStart, chunkBytes, checksum, fail));
    if (checksum && checksum.digest('hex') !== expected) {
      fail(`its content does not match the checksum in its metadata (${CHECKSUM_KEY}): the file was damaged or changed after it was written`);
    }
    const tensors = new Map<string, StoredTensor>();
    for (const e of entries) {
      const data = values.get(e)!;
      const bad = options.allowNonFinite ? -1 : firstNonFinite(data);
      if (bad >= 0) {
        fail(`tensor '${e.name}' holds ${nonFiniteName(data[bad]!)} at element ${bad}: weights must be finite (a damaged file, or a model whose training diverged); pass { allowNonFinite: true } to read it anyway (the CLI: --allow-non-finite)`);
      }
      tensors.set(e.name, { shape: e.shape, data, dtype: e.dtype });
    }
    return { tensors, metadata };
  } finally {
    await file.close();
  }
}

export interface WriteOptions {
  /** Put a sha256 of the content in the metadata (CHECKSUM_KEY), which readSafetensors verifies. */
  checksum?: boolean;
}

/** A byte array as pieces of at most READ_CHUNK_BYTES (views, not copies): no write of gigabytes at once. */
function* pieces(bytes: Uint8Array): Generator<Uint8Array> {
  for (let at = 0; at < bytes.byteLength; at += READ_CHUNK_BYTES) yield bytes.subarray(at, Math.min(at + READ_CHUNK_BYTES, bytes.byteLength));
}

/**
 * A tensor to write: float32 values, stored as float32 unless `storeAs` asks for a 16-bit form
 * (rounded to nearest even). A StoredTensor's own `dtype` (how it was read) is not looked at.
 */
export interface TensorToWrite {
  shape: readonly number[];
  data: Float32Array;
  storeAs?: 'F32' | 'BF16' | 'F16';
}

/**
 * Writes tensors and string metadata as a safetensors file, atomically (writeFileAtomic:
 * an existing file is replaced whole or not at all). A checksum key among `metadata` is dropped:
 * it described other content.
 */
export async function writeSafetensors(
  path: string,
  tensors: Map<string, TensorToWrite> | Record<string, TensorToWrite>,
  metadata: Record<string, string> = {},
  options: WriteOptions = {},
): Promise<void> {
  const list = tensors instanceof Map ? [...tensors.entries()] : Object.entries(tensors);
  const { [CHECKSUM_KEY]: _stale, ...meta } = metadata;
  const described: Record<string, unknown> = {};
  const entries: HeaderEntry[] = [];
  let offset = 0;
  const data: Uint8Array[] = [];
  for (const [name, t] of list) {
    if (name === '__metadata__') throw new InvalidArgValueError(`writeSafetensors: '__metadata__' is not a valid tensor name`);
    const elements = t.shape.reduce((n, d) => n * d, 1);
    if (elements !== t.data.length) throw new InvalidArgValueError(`writeSafetensors: tensor '${name}' has ${t.data.length} values for shape [${t.shape.join(', ')}]`);
    const dtype = t.storeAs ?? 'F32';
    if (dtype !== 'F32' && dtype !== 'BF16' && dtype !== 'F16') throw new InvalidArgTypeError(`writeSafetensors: tensor '${name}' has storeAs ${JSON.stringify(dtype)}, expected 'F32', 'BF16' or 'F16'`);
    // Float32Array memory is little-endian on every platform Node supports.
    const bytes = dtype === 'F32' ? new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength) : encode16(t.data, dtype);
    entries.push({ name, dtype, shape: [...t.shape], elements, begin: offset, end: offset + bytes.byteLength });
    described[name] = { dtype, shape: [...t.shape], data_offsets: [offset, offset + bytes.byteLength] };
    data.push(bytes);
    offset += bytes.byteLength;
  }
  if (options.checksum) {
    const checksum = startChecksum(meta, entries);
    for (const bytes of data) for (const piece of pieces(bytes)) checksum.update(piece);
    meta[CHECKSUM_KEY] = checksum.digest('hex');
  }
  let json = JSON.stringify(Object.keys(meta).length ? { __metadata__: meta, ...described } : described);
  // Pad with spaces so that the data starts 8-byte aligned (allowed by the format).
  json += ' '.repeat((8 - ((8 + Buffer.byteLength(json)) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  await writeFileAtomic(path, [prefix, headerBytes, ...data.flatMap((bytes) => [...pieces(bytes)])]);
}
