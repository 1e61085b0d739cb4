// safetensors: round trips bit-exactly, reads the other dtypes, and turns every kind of bad file
// into an error that names the problem.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { readSafetensors, writeSafetensors } from '../lib/io/safetensors.js';
import { randomArray } from './helpers.js';

const dir = mkdtempSync(join(tmpdir(), 'castling-safetensors-'));

/** Builds a file by hand from a header object (or raw header text) and a data buffer. */
function rawFile(name: string, header: unknown, data = new Uint8Array(0), claimedHeaderBytes?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(claimedHeaderBytes ?? BigInt(json.length));
  const path = join(dir, name);
  writeFileSync(path, Buffer.concat([prefix, json, data]));
  return path;
}

describe('safetensors', () => {
  it('round-trips tensors and metadata bit-exactly', async () => {
    const a = randomArray(7 * 197);
    const b = Float32Array.from([Number.NaN, -0, Infinity, 1e-45]);
    const path = join(dir, 'round.safetensors');
    await writeSafetensors(path, { 'blocks.0.attn.qkv.weight': { shape: [7, 197], data: a }, odd: { shape: [4], data: b }, empty: { shape: [0, 3], data: new Float32Array(0) } }, { config: '{"depth":2}' });
    const back = await readSafetensors(path);
    expect(back.metadata).toEqual({ config: '{"depth":2}' });
    expect(back.tensors.get('blocks.0.attn.qkv.weight')!.shape).toEqual([7, 197]);
    expect(Buffer.from(back.tensors.get('blocks.0.attn.qkv.weight')!.data.buffer).equals(Buffer.from(a.buffer))).toBe(true);
    expect(Buffer.from(back.tensors.get('odd')!.data.buffer).equals(Buffer.from(b.buffer))).toBe(true);
    expect(back.tensors.get('empty')!.shape).toEqual([0, 3]);
    // The data starts 8-byte aligned.
    const bytes = readFileSync(path);
    expect((8 + Number(bytes.readBigUInt64LE(0))) % 8).toBe(0);
  });

  it('reads F16, BF16 and F64 as float32', async () => {
    const data = Buffer.alloc(2 + 2 + 8);
    data.writeUInt16LE(0x3c00, 0); // F16 1.0
    data.writeUInt16LE(0xc000, 2); // BF16 -2.0
    data.writeDoubleLE(0.1, 4);
    const path = rawFile('dtypes.safetensors', {
      h: { dtype: 'F16', shape: [1], data_offsets: [0, 2] },
      b: { dtype: 'BF16', shape: [1], data_offsets: [2, 4] },
      d: { dtype: 'F64', shape: [1], data_offsets: [4, 12] },
    }, data);
    const t = (await readSafetensors(path)).tensors;
    expect(t.get('h')!.data[0]).toBe(1);
    expect(t.get('b')!.data[0]).toBe(-2);
    expect(t.get('d')!.data[0]).toBe(Math.fround(0.1));
  });

  it('a failed write leaves the existing file untouched and no temporary behind', async () => {
    const path = join(dir, 'keep.safetensors');
    await writeSafetensors(path, { a: { shape: [2], data: Float32Array.from([1, 2]) } });
    const before = readFileSync(path);
    await expect(writeSafetensors(path, { a: { shape: [3], data: Float32Array.from([1, 2]) } })).rejects.toThrow(/2 values for shape \[3\]/);
    expect(readFileSync(path).equals(before)).toBe(true);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('a write to a folder, or into a folder that does not exist, names the path it was given', async () => {
    const data = { a: { shape: [1], data: Float32Array.from([1]) } };
    await expect(writeSafetensors(dir, data)).rejects.toThrow(new RegExp(`cannot write '${dir}': it is a folder, expected a file path`));
    const missing = join(dir, 'no-such-folder', 'm.safetensors');
    await expect(writeSafetensors(missing, data)).rejects.toThrow(/cannot write '.*no-such-folder\/m\.safetensors': the folder '.*no-such-folder' does not exist/);
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('rejects hostile and truncated files with a clear error', async () => {
    const ok = { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } };
    const cases: Array<[string, string, RegExp]> = [
      ['short', (() => { const p = join(dir, 'short'); writeFileSync(p, Buffer.from([1, 2, 3])); return p; })(), /too short/],
      ['huge header', rawFile('huge', ok, new Uint8Array(8), 2n ** 62n), /header claims \d+ bytes but at most/],
      ['header past end', rawFile('past', ok, new Uint8Array(8), 10_000n), /header claims 10000 bytes/],
      ['not json', rawFile('notjson', '{"a": [', new Uint8Array(0)), /not valid JSON/],
      ['array header', rawFile('array', '[1,2]'), /must be a JSON object/],
      ['truncated data', rawFile('trunc', ok, new Uint8Array(4)), /outside the 4 bytes of data/],
      ['size mismatch', rawFile('mismatch', { a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), /shape \[3\] of F32 \(12 bytes\) but data_offsets cover 8 bytes/],
      ['bad dtype', rawFile('dtype', { a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), /dtype "I64", expected one of/],
      ['negative dim', rawFile('neg', { a: { dtype: 'F32', shape: [-2], data_offsets: [0, 8] } }, new Uint8Array(8)), /expected an array of non-negative integers/],
      ['giant shape', rawFile('giant', { a: { dtype: 'F32', shape: [2 ** 40, 2 ** 40], data_offsets: [0, 8] } }, new Uint8Array(8)), /data_offsets cover 8 bytes/],
      ['bad offsets', rawFile('offs', { a: { dtype: 'F32', shape: [2], data_offsets: [8, 0] } }, new Uint8Array(8)), /outside the 8 bytes/],
      ['overlap', rawFile('overlap', { a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)), /overlap/],
      ['metadata', rawFile('meta', { __metadata__: { n: 3 } }), /__metadata__.n must be a string/],
    ];
    for (const [label, path, message] of cases) {
      await expect(readSafetensors(path), label).rejects.toThrow(message);
    }
    await expect(readSafetensors(join(dir, 'missing.safetensors'))).rejects.toThrow(/missing\.safetensors: no such file/);
    await expect(readSafetensors(dir)).rejects.toThrow(/: a folder, not a safetensors file/);
  });
});
