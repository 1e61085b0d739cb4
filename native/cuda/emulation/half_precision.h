// The 16-bit storage types of the emulated device (__half, __nv_bfloat16) and their conversions,
// bit for bit as the GPU converts: float -> 16 bits rounds to nearest, ties to even; overflow goes
// to infinity of the same sign; every NaN becomes the canonical NaN 0x7fff. 16 bits -> float is
// exact, except that a half NaN widens to the canonical float NaN 0x7fffffff.
#pragma once
#include <cstdint>
#include <cstring>

struct __half {
  unsigned short __x;
};

struct __nv_bfloat16 {
  unsigned short __x;
};

namespace castling::emu {

inline std::uint32_t floatBits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline float bitsFloat(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

inline unsigned short floatToHalfBits(float f) {
  const std::uint32_t x = floatBits(f);
  const std::uint32_t sign = (x >> 16) & 0x8000u, magnitude = x & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return 0x7fffu;                      // NaN
  if (magnitude >= 0x477ff000u) return std::uint16_t(sign | 0x7c00u);  // 65520 and up round to infinity
  if (magnitude < 0x33000001u) return std::uint16_t(sign);           // at most half the smallest subnormal: zero
  const int exponent = int(magnitude >> 23) - 127;
  std::uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;  // the leading one made explicit
  // Bits of the 24-bit significand that do not fit: 13 for a normal half, more below 2^-14.
  const int drop = exponent >= -14 ? 13 : 13 + (-14 - exponent);
  const std::uint32_t kept = mantissa >> drop, rest = mantissa & ((1u << drop) - 1), halfway = 1u << (drop - 1);
  std::uint32_t result = exponent >= -14 ? (std::uint32_t(exponent + 15) << 10) | (kept & 0x3ffu) : kept;
  if (rest > halfway || (rest == halfway && (result & 1u))) ++result;  // a carry into the exponent is still right
  return std::uint16_t(sign | result);
}

inline float halfBitsToFloat(unsigned short h) {
  const std::uint32_t sign = std::uint32_t(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return bitsFloat(mantissa ? 0x7fffffffu : sign | 0x7f800000u);
  if (exponent == 0) {
    if (mantissa == 0) return bitsFloat(sign);
    int shift = 0;  // normalise the subnormal
    std::uint32_t m = mantissa;
    while (!(m & 0x400u)) {
      m <<= 1;
      ++shift;
    }
    return bitsFloat(sign | (std::uint32_t(127 - 15 + 1 - shift) << 23) | ((m & 0x3ffu) << 13));
  }
  return bitsFloat(sign | ((exponent + 127 - 15) << 23) | (mantissa << 13));
}

inline unsigned short floatToBfloat16Bits(float f) {
  const std::uint32_t x = floatBits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return 0x7fffu;  // NaN
  // Adding 0x7fff plus the lowest kept bit rounds to nearest, ties to even; overflow carries into
  // the exponent and gives infinity.
  return std::uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

inline float bfloat16BitsToFloat(unsigned short b) { return bitsFloat(std::uint32_t(b) << 16); }

}  // namespace castling::emu

inline __half __float2half_rn(float f) { return __half{castling::emu::floatToHalfBits(f)}; }
inline __half __float2half(float f) { return __float2half_rn(f); }
inline float __half2float(__half h) { return castling::emu::halfBitsToFloat(h.__x); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{castling::emu::floatToBfloat16Bits(f)}; }
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }
inline float __bfloat162float(__nv_bfloat16 b) { return castling::emu::bfloat16BitsToFloat(b.__x); }
inline unsigned short __half_as_ushort(__half h) { return h.__x; }
inline __half __ushort_as_half(unsigned short u) { return __half{u}; }
inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 b) { return b.__x; }
inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return __nv_bfloat16{u}; }
