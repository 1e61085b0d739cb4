#include "panel_packing.h"

#include <algorithm>
#include <cstring>

namespace castling::cpu {

namespace {

// Packing runs once per call on every CPU path, so it is compiled once, with the target's baseline
// flags, in GCC vectors of 4 floats (SSE2 on x86-64, NEON on Arm): the same style as the kernels'
// SIMD vocabulary, without a path of its own.
typedef float Float4 __attribute__((vector_size(16)));

inline Float4 load4(const float* p) {
  Float4 v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
inline void store4(float* p, Float4 v) { std::memcpy(p, &v, sizeof v); }
inline void store2(float* p, Float4 v) { std::memcpy(p, &v, 2 * sizeof(float)); }

// A 4 (rows) x 4 (k) block of src to dst[k * width + r]: 4 loads, a register transpose (two rounds
// of interleaving shuffles) and 4 stores instead of 16 scalar stores.
inline void transpose4x4(const float* src, std::int64_t ld, float* dst, int width) {
  Float4 r0 = load4(src), r1 = load4(src + ld), r2 = load4(src + 2 * ld), r3 = load4(src + 3 * ld);
  Float4 lo01 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5), hi01 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
  Float4 lo23 = __builtin_shufflevector(r2, r3, 0, 4, 1, 5), hi23 = __builtin_shufflevector(r2, r3, 2, 6, 3, 7);
  store4(dst, __builtin_shufflevector(lo01, lo23, 0, 1, 4, 5));
  store4(dst + width, __builtin_shufflevector(lo01, lo23, 2, 3, 6, 7));
  store4(dst + 2 * width, __builtin_shufflevector(hi01, hi23, 0, 1, 4, 5));
  store4(dst + 3 * width, __builtin_shufflevector(hi01, hi23, 2, 3, 6, 7));
}

// A 2 (rows) x 4 (k) block: the two rows left over when MR = 6 (AVX2).
inline void transpose2x4(const float* src, std::int64_t ld, float* dst, int width) {
  Float4 r0 = load4(src), r1 = load4(src + ld);
  Float4 k01 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5), k23 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
  store2(dst, k01);
  store2(dst + width, __builtin_shufflevector(k01, k01, 2, 3, 0, 1));
  store2(dst + 2 * width, k23);
  store2(dst + 3 * width, __builtin_shufflevector(k23, k23, 2, 3, 0, 1));
}

}  // namespace

void copyPanel(const float* src, std::int64_t ld, std::int64_t cols, std::int64_t kc, int width,
               float* dst) {
  if (cols == width) {
    // Whole panels (all but the last of each block), in 4-float copies rather than a memcpy call
    // per k. The weight gradient dW = dy^T x packs both operands this way, from rows 1.5-6 KB
    // apart: waiting for them was an eighth of that GEMM's time (perf), and fetching each row 16
    // steps ahead made the GEMM 3-4% faster (AVX-512), 3-7% (AVX2), at DeiT-S's batch-32 shapes.
    const int vec_end = width / 4 * 4;
    constexpr std::int64_t kPrefetchRows = 16;
    for (std::int64_t k = 0; k < kc; ++k, src += ld, dst += width) {
      __builtin_prefetch(src + kPrefetchRows * ld);
      __builtin_prefetch(src + kPrefetchRows * ld + width - 1);
      int c = 0;
      for (; c < vec_end; c += 4) store4(dst + c, load4(src + c));
      for (; c < width; ++c) dst[c] = src[c];
    }
    return;
  }
  for (std::int64_t k = 0; k < kc; ++k) {
    float* out = dst + k * width;
    std::memcpy(out, src + k * ld, std::size_t(cols) * sizeof(float));
    std::fill(out + cols, out + width, 0.0f);
  }
}

void transposePanel(const float* src, std::int64_t ld, std::int64_t rows, std::int64_t kc,
                    int width, float* dst) {
  // Four k of 4 rows per register transpose. The steps run over a whole 64-byte line of every row
  // (16 k) before moving on, so that each source line is used up right after it is loaded: rows
  // K floats apart with K a multiple of 1024 (a ViT's 3072 hidden width: 12 KB) all fall in one
  // L1 set, and a line left for later was evicted by the other rows before its next use.
  constexpr std::int64_t kLineFloats = 16;
  auto steps = [&](std::int64_t k, std::int64_t ks) {  // k .. k + ks, ks a multiple of 4
    std::int64_t r = 0;
    for (; r + 4 <= rows; r += 4)
      for (std::int64_t j = 0; j < ks; j += 4) transpose4x4(src + r * ld + k + j, ld, dst + (k + j) * width + r, width);
    for (; r + 2 <= rows; r += 2)
      for (std::int64_t j = 0; j < ks; j += 4) transpose2x4(src + r * ld + k + j, ld, dst + (k + j) * width + r, width);
    for (; r < rows; ++r)
      for (std::int64_t j = 0; j < ks; ++j) dst[(k + j) * width + r] = src[r * ld + k + j];
    for (std::int64_t j = 0; j < ks; ++j) std::fill(dst + (k + j) * width + rows, dst + (k + j + 1) * width, 0.0f);
  };
  std::int64_t k = 0;
  for (; k + kLineFloats <= kc; k += kLineFloats) steps(k, kLineFloats);
  if (std::int64_t ks = (kc - k) / 4 * 4; ks > 0) steps(k, ks), k += ks;
  for (; k < kc; ++k) {
    float* out = dst + k * width;
    for (std::int64_t r = 0; r < rows; ++r) out[r] = src[r * ld + k];
    std::fill(out + rows, out + width, 0.0f);
  }
}

}  // namespace castling::cpu
