// safetensors: round trips bit-exactly, reads the other dtypes, and turns every kind of bad file
// into an error that names the problem: hostile sizes before anything is allocated, and damage
// that a lenient reader would load silently (a name twice, bytes no tensor owns, a shifted header).
import { spawnSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readdirSync, readFileSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';

import { describe, expect, it } from 'vitest';

import { CHECKSUM_KEY, readSafetensors, writeSafetensors } from '../lib/io/safetensors.js';
import { randomArray, scratchDirectory } from './helpers.js';

const dir = scratchDirectory('castling-safetensors-');

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
    await expect(readSafetensors(path)).rejects.toThrow(/round\.safetensors: tensor 'odd' holds NaN at element 0: weights must be finite.*allowNonFinite/);
    const back = await readSafetensors(path, { allowNonFinite: true });
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

  it('refuses what a lenient reader would load silently: a name twice, a shifted header, uncovered or trailing bytes, bad names', async () => {
    const two = new Uint8Array(8);
    // A name with a Latin-1 byte (not UTF-8): rawFile writes strings as UTF-8, so the bytes go in as they are.
    const latin1 = join(dir, 'latin1');
    const json = Buffer.concat([Buffer.from('{"caf'), Buffer.from([0xe9]), Buffer.from('":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}')]);
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(json.length));
    writeFileSync(latin1, Buffer.concat([prefix, json, two]));
    const a = '{"dtype":"F32","shape":[1],"data_offsets":[0,4]}';
    const b = '{"dtype":"F32","shape":[1],"data_offsets":[4,8]}';
    const cases: Array<[string, string, RegExp]> = [
      // JSON.parse alone keeps the second 'w' without a word.
      ['duplicate', rawFile('dup', `{"w":${a},"w":${b}}`, two), /dup: the header names 'w' twice/],
      ['duplicate escaped', rawFile('dup2', `{"w":${a},"\\u0077":${b}}`, two), /the header names 'w' twice/],
      ['duplicate metadata', rawFile('dup3', `{"__metadata__":{"k":"1","k":"2"},"w":${a},"v":${b}}`, two), /the header names 'k' twice/],
      ['gap', rawFile('gap', { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] }, b: { dtype: 'F32', shape: [1], data_offsets: [8, 12] } }, new Uint8Array(12)), /bytes 4 to 8 of the data belong to no tensor \(before 'b'\)/],
      ['leading gap', rawFile('lead', { a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, two), /bytes 0 to 4 of the data belong to no tensor/],
      ['trailing', rawFile('trailing', { a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, two), /the last 4 of the 8 bytes of data belong to no tensor/],
      ['empty name', rawFile('empty', { '': { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, two), /a tensor named "": expected a non-empty name of printable characters/],
      ['control name', rawFile('control', { 'a\u0001': { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, two), /a tensor named "a\\u0001"/],
      ['not utf-8', latin1, /latin1: the header is not valid UTF-8/],
    ];
    for (const [label, path, message] of cases) await expect(readSafetensors(path), label).rejects.toThrow(message);
  });

  it('a header length off by one is refused, where it used to shift every tensor by a byte', async () => {
    const path = join(dir, 'shift.safetensors');
    await writeSafetensors(path, { a: { shape: [3], data: Float32Array.from([1, 2, 3]) } });
    const bytes = readFileSync(path);
    const claimed = Number(bytes.readBigUInt64LE(0));
    for (const delta of [-1, 1]) {
      const shifted = Buffer.from(bytes);
      shifted.writeBigUInt64LE(BigInt(claimed + delta));
      writeFileSync(path, shifted);
      await expect(readSafetensors(path), `delta ${delta}`).rejects.toThrow(/shift\.safetensors: (the last 1 of the \d+ bytes of data belong to no tensor|the header is not valid JSON|tensor 'a' has data_offsets \[0, 12\] outside the 11 bytes)/);
    }
  });

  it('headers padded with spaces (as other writers do) and empty tensors still read', async () => {
    const path = rawFile('padded', `{"e":{"dtype":"F32","shape":[0],"data_offsets":[0,0]},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}          `, Buffer.from(Float32Array.from([5]).buffer));
    const back = await readSafetensors(path);
    expect([...back.tensors.keys()]).toEqual(['e', 'a']);
    expect(back.tensors.get('a')!.data[0]).toBe(5);
  });

  it('refuses non-finite values unless allowed, naming the tensor and element', async () => {
    const path = join(dir, 'inf.safetensors');
    await writeSafetensors(path, { fine: { shape: [2], data: Float32Array.from([1, 2]) }, w: { shape: [3], data: Float32Array.from([0, 1, -Infinity]) } });
    await expect(readSafetensors(path)).rejects.toThrow(/inf\.safetensors: tensor 'w' holds -Infinity at element 2/);
    expect((await readSafetensors(path, { allowNonFinite: true })).tensors.get('w')!.data[2]).toBe(-Infinity);
    // F16's NaN pattern is caught after conversion too.
    const half = Buffer.alloc(2);
    half.writeUInt16LE(0x7e00);
    await expect(readSafetensors(rawFile('half-nan', { h: { dtype: 'F16', shape: [1], data_offsets: [0, 2] } }, half))).rejects.toThrow(/tensor 'h' holds NaN at element 0/);
  });

  it('reads tensors a chunk at a time across the chunk edges, in every dtype', async () => {
    const values = randomArray(1001);
    const f64 = Buffer.alloc(8 * 1001);
    values.forEach((v, i) => f64.writeDoubleLE(v, 8 * i));
    const path = rawFile('chunks', { f: { dtype: 'F32', shape: [7, 143], data_offsets: [0, 4004] }, d: { dtype: 'F64', shape: [1001], data_offsets: [4004, 12012] } }, Buffer.concat([Buffer.from(values.buffer), f64]));
    for (const chunkBytes of [8, 24, 1000, 4096]) {
      const back = (await readSafetensors(path, { chunkBytes })).tensors;
      expect(back.get('f')!.data, `chunk ${chunkBytes}`).toEqual(values);
      expect(back.get('d')!.data, `chunk ${chunkBytes}`).toEqual(values);
    }
  });

  it('refuses a file whose tensors need more float32 memory than the budget, before reading them', async () => {
    const path = rawFile('budget', { h: { dtype: 'F16', shape: [4], data_offsets: [0, 8] } }, new Uint8Array(8));
    await expect(readSafetensors(path, { memoryBudget: 15 })).rejects.toThrow(/budget: its tensors need 16 bytes as float32, more than the memory budget of 15 bytes; pass \{ memoryBudget \}/);
    expect((await readSafetensors(path, { memoryBudget: 16 })).tensors.get('h')!.data).toEqual(new Float32Array(4));
  });

  it('a tensor of gigabytes (a sparse file) is refused or read in chunks, never an abort of the process', () => {
    // Node aborts the process (SIGABRT, uncatchable) on a single read of 2 GiB or more: run the
    // read in a child process, so that an abort fails this test instead of ending the test run.
    const path = join(dir, 'sparse.safetensors');
    const bytes = 3 * 2 ** 30;
    const header = Buffer.from(JSON.stringify({ big: { dtype: 'F32', shape: [bytes / 4], data_offsets: [0, bytes] } }));
    const prefix = Buffer.alloc(8);
    prefix.writeBigUInt64LE(BigInt(header.length));
    const fd = openSync(path, 'w');
    writeSync(fd, prefix);
    writeSync(fd, header);
    ftruncateSync(fd, 8 + header.length + bytes); // a hole: no disk used
    closeSync(fd);
    const module = join(import.meta.dirname, '..', 'dist', 'lib', 'io', 'safetensors.js');
    const script = `import(${JSON.stringify(module)}).then((m) => m.readSafetensors(${JSON.stringify(path)}, { memoryBudget: 2 ** 30 })).then(() => console.log('read'), (e) => console.log('refused: ' + e.message))`;
    const child = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
    expect(child.signal, child.stderr).toBeNull();
    expect(child.stdout).toMatch(/refused: .*sparse\.safetensors: its tensors need 3\.0 GiB as float32, more than the memory budget of 1\.0 GiB/);
  });

  it('verifies the checksum that writeSafetensors puts in the metadata when asked', async () => {
    const path = join(dir, 'sum.safetensors');
    const tensors = { a: { shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) }, b: { shape: [1], data: Float32Array.from([5]) } };
    await writeSafetensors(path, tensors, { config: '{"depth":2}', [CHECKSUM_KEY]: 'stale' }, { checksum: true });
    const back = await readSafetensors(path);
    expect(back.metadata[CHECKSUM_KEY]).toMatch(/^[0-9a-f]{64}$/);
    expect(back.tensors.get('b')!.data[0]).toBe(5);
    const bytes = readFileSync(path);
    const damaged = (change: (b: Buffer) => void, name: string) => {
      const copy = Buffer.from(bytes);
      change(copy);
      writeFileSync(join(dir, name), copy);
      return join(dir, name);
    };
    // A data byte (4.0 becomes 4.000001), and a config value of the same length.
    const flipped = damaged((b) => (b[b.length - 8]! ^= 1), 'flipped.safetensors');
    await expect(readSafetensors(flipped)).rejects.toThrow(/flipped\.safetensors: its content does not match the checksum in its metadata/);
    const edited = damaged((b) => b.write('{\\"depth\\":3}', b.indexOf('{\\"depth\\":2}')), 'edited.safetensors');
    await expect(readSafetensors(edited)).rejects.toThrow(/edited\.safetensors: its content does not match the checksum/);
    // Files without a checksum read as before.
    await writeSafetensors(path, tensors, { config: '{"depth":2}' });
    expect((await readSafetensors(path)).metadata).toEqual({ config: '{"depth":2}' });
  });
});
