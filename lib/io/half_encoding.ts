// float32 to the 16-bit forms safetensors stores (bfloat16 and IEEE half), rounding to nearest
// with ties to even as the GPU's conversions do, so a 16-bit weight read back to float32 and
// written again keeps its bits. NaN stays a (quiet) NaN; values beyond the range become infinity.
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** The bfloat16 bits of `v` (the top half of its float32, rounded). */
export function bfloat16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  if ((x & 0x7fffffff) > 0x7f800000) return ((x >>> 16) & 0x8000) | 0x7fc0;
  return ((x + 0x7fff + ((x >>> 16) & 1)) >>> 16) & 0xffff;
}

/** The IEEE half bits of `v`. */
export function float16Bits(v: number): number {
  f32[0] = v;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const magnitude = x & 0x7fffffff;
  if (magnitude > 0x7f800000) return sign | 0x7e00;
  if (magnitude >= 0x477ff000) return sign | 0x7c00; // 65520 and beyond round past the largest half, 65504
  if (magnitude < 0x38800000) {
    // Below 2^-14: a subnormal half, a multiple of 2^-24 (exact in a double, so rounding is plain).
    const units = Math.abs(f32[0]!) * 2 ** 24;
    const down = Math.floor(units);
    const rest = units - down;
    return sign | (rest > 0.5 || (rest === 0.5 && down % 2 === 1) ? down + 1 : down);
  }
  // A normal half: the exponent rebased from 127 to 15, then the fraction rounded from 23 bits to 10.
  const rebased = magnitude - 0x38000000;
  return sign | ((rebased + 0xfff + ((rebased >>> 13) & 1)) >>> 13);
}

/** The little-endian bytes of `data` as 16-bit values of `dtype`. */
export function encode16(data: Float32Array, dtype: 'BF16' | 'F16'): Uint8Array {
  const bits = new Uint16Array(data.length);
  const convert = dtype === 'BF16' ? bfloat16Bits : float16Bits;
  for (let i = 0; i < data.length; i++) bits[i] = convert(data[i]!);
  return new Uint8Array(bits.buffer); // Uint16Array memory is little-endian on every platform Node supports
}
