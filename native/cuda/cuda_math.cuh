// The CPU's GELU arithmetic (native/cpu/vector_math.inc) on the device, operation for operation:
// the exact (erf) GELU through the same erf approximation and the same exp polynomial, so that
// both devices compute the same function (libdevice's erff is more accurate, and would differ from
// the CPU by up to its 1.5e-7 absolute error, which is large relative to GELU's tiny values at
// large negative x).
#pragma once
#include <cuda_runtime.h>

namespace castling::cuda::devmath {

__device__ __forceinline__ float expPoly(float x) {
  x = x < -87.33654f ? -87.33654f : x;
  x = x > 88.72283f ? 88.72283f : x;
  const float kRound = 12582912.0f;
  float n = __fsub_rn(__fmaf_rn(x, 1.44269504088896341f, kRound), kRound);
  float r = x - n * 0.693145751953125f;
  r = r - n * 1.42860682030941723212e-6f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  int ni = int(n);
  int half = ni >> 1;
  float s1 = __int_as_float((half + 127) << 23);
  float s2 = __int_as_float((ni - half + 127) << 23);
  return p * s1 * s2;
}

__device__ __forceinline__ float erfApprox(float x) {
  float a = fabsf(x);
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float poly = 1.061405429f;
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  float y = 1.0f - poly * t * expPoly(-a * a);
  return x < 0 ? -y : y;
}

constexpr float kInvSqrt2 = 0.70710678118654752440f;
constexpr float kInvSqrt2Pi = 0.39894228040143267794f;

__device__ __forceinline__ float gelu(float x) { return 0.5f * x * (1.0f + erfApprox(x * kInvSqrt2)); }

__device__ __forceinline__ float geluDerivative(float x) {
  float cdf = 0.5f * (1.0f + erfApprox(x * kInvSqrt2));
  float pdf = kInvSqrt2Pi * expPoly(-0.5f * x * x);
  return cdf + x * pdf;
}

}  // namespace castling::cuda::devmath
