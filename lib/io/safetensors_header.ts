// The JSON header of a safetensors file, checked strictly: every name once, printable and
// non-empty; every tensor's bytes inside the data and of its shape's size; and the tensors tiling
// the data region exactly, so that a shifted header length, a byte no tensor owns or two tensors
// sharing bytes is an error naming the file rather than a model of silently wrong weights.
import { firstDuplicateKey } from './json_duplicates.js';

export type DType = 'F32' | 'F16' | 'BF16' | 'F64';
export const DTYPE_BYTES: Record<DType, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };

/** One tensor as the header describes it: its bytes are [begin, end) of the data region. */
export interface HeaderEntry {
  name: string;
  dtype: DType;
  shape: number[];
  elements: number;
  begin: number;
  end: number;
}

export interface Header {
  /** In the header's order. */
  entries: HeaderEntry[];
  metadata: Record<string, string>;
}

/** Names are printable text: a control character (or an empty name) is damage, not a tensor. */
const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/**
 * Parses and validates header text against the size of the data that follows it. `fail` throws
 * with the file's name.
 */
export function parseHeader(json: string, dataBytes: number, fail: (message: string) => never): Header {
  let header: unknown;
  try {
    header = JSON.parse(json);
  } catch (error) {
    fail(`the header is not valid JSON (${(error as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail('the header must be a JSON object');
  const duplicate = firstDuplicateKey(json);
  if (duplicate !== null) fail(`the header names '${duplicate}' twice (only one can be meant: a damaged or hand-edited file)`);
  const metadata: Record<string, string> = {};
  const entries: HeaderEntry[] = [];
  for (const [name, value] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) fail('__metadata__ must be an object of strings');
      for (const [key, v] of Object.entries(value as Record<string, unknown>)) {
        if (typeof v !== 'string') fail(`__metadata__.${key} must be a string, got ${typeof v}`);
        metadata[key] = v as string;
      }
      continue;
    }
    entries.push(entryOf(name, value, dataBytes, fail));
  }
  checkTiling(entries, dataBytes, fail);
  return { entries, metadata };
}

function entryOf(name: string, value: unknown, dataBytes: number, fail: (message: string) => never): HeaderEntry {
  if (name === '' || CONTROL_CHARACTER.test(name)) fail(`the header has a tensor named ${JSON.stringify(name)}: expected a non-empty name of printable characters`);
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
  return { name, dtype, shape: shape as number[], elements, begin, end };
}

/**
 * The tensors' byte ranges, in order, must cover the data region exactly: two names for one byte
 * would alias, and a byte no tensor owns (or bytes after the last tensor) means the header and
 * the data disagree, as when the header length is off by one.
 */
function checkTiling(entries: HeaderEntry[], dataBytes: number, fail: (message: string) => never): void {
  const sorted = inDataOrder(entries);
  let covered = 0;
  let previous: HeaderEntry | null = null;
  for (const e of sorted) {
    if (e.begin < covered) fail(`tensors '${previous!.name}' and '${e.name}' overlap in the data`);
    if (e.begin > covered) fail(`bytes ${covered} to ${e.begin} of the data belong to no tensor (before '${e.name}'): the header does not describe the data`);
    covered = e.end;
    previous = e;
  }
  if (covered < dataBytes) {
    fail(`the last ${dataBytes - covered} of the ${dataBytes} bytes of data belong to no tensor (trailing bytes, or a header length that is off)`);
  }
}

/** The entries in the order of their bytes (empty tensors before others at the same offset). */
export function inDataOrder(entries: readonly HeaderEntry[]): HeaderEntry[] {
  return [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
