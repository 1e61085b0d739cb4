// Packing into "interleaved panels", the layout every register-blocked product here reads: for
// each step k, `width` consecutive floats (a GEMM's MR rows of A or NR columns of B, an attention
// kernel's block of queries or keys), zero-padded past the last valid row or column so that the
// micro-kernels never need a bound check. The source either already has the width dimension
// contiguous (a plain copy per k) or has k contiguous (a transpose).
#pragma once
#include <cstdint>

namespace castling::cpu {

// dst[k * width + c] = src[k * ld + c] for c < cols, 0 for cols <= c < width, k < kc.
void copyPanel(const float* src, std::int64_t ld, std::int64_t cols, std::int64_t kc, int width, float* dst);

// dst[k * width + r] = src[r * ld + k] for r < rows, 0 for rows <= r < width, k < kc.
void transposePanel(const float* src, std::int64_t ld, std::int64_t rows, std::int64_t kc, int width, float* dst);

}  // namespace castling::cpu
