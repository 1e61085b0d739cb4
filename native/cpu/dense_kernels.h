// The dense group of the CPU kernel table (cpu_kernels.h): the GEMM micro-kernels, the
// elementwise kernels and the row-wise ones (softmax, layer norm), one instance per instruction
// set. The op layer (ops_*.cpp, gemm.cpp) gets it from the active table and never names an ISA.
#pragma once
#include <cstdint>

namespace castling::cpu {

// What a GEMM writes after the product, applied to each finished output tile while it is still
// in cache: out = act(alpha * A.B + bias) + residual, or out += alpha * A.B + bias + residual when
// accumulating (no activation then: it would need the whole sum before the old value is added).
struct Epilogue {
  const float* bias = nullptr;      // length N, added to every row
  bool gelu = false;                // exact erf GELU after the bias
  const float* residual = nullptr;  // M x N, row stride ldr, added last
  std::int64_t ldr = 0;
};

// Floats in a 64-byte cache line: the unit in which the GEMM asks for B ahead.
constexpr std::int64_t kCacheLineFloats = 16;

// What a GEMM micro-kernel adds to alpha * A.B as it stores its tile, while the values are still
// in registers: the old C (accumulate), a bias (NR floats from the tile's first column) and a
// residual (the tile's rows, ldr apart). The rest of an epilogue (GELU, which comes between the
// bias and the residual) is epilogueTile's. Beside them, what the tile's k loop asks for into L2
// on the way: nextBLines cache lines from nextB on, one every four k steps (gemm.cpp hands each
// tile its share of the next B block).
struct TileAddends {
  bool accumulate = false;
  const float* bias = nullptr;
  const float* residual = nullptr;
  std::int64_t ldr = 0;
  const float* nextB = nullptr;
  std::int64_t nextBLines = 0;
};

struct DenseKernels {
  // GEMM register tile: the micro-kernel computes MR rows x NR columns of C.
  int mr, nr;
  // Whether the micro-kernels below ask for B's lines ahead (fill_cpu_kernels.inc).
  bool gemmPrefetchesB;
  // Whether the GEMM, multiplying by a B packed whole beforehand (a layer's weights), asks for the
  // next block of B into L2 while it multiplies the current one, after a narrow first block
  // (gemm.cpp; fill_cpu_kernels.inc decides per CPU).
  bool gemmPrefetchesNextBlock;
  // C[0..MR)[0..NR) (row stride ldc) = alpha * sum_k a[k*MR+i] * b[k*NR+j] + the addends (the
  // old C, bias, residual) over packed panels a (kc x MR) and b (kc x NR) (lda unused).
  void (*gemmMicro)(std::int64_t kc, const float* a, std::int64_t lda, const float* b, float* c, std::int64_t ldc,
                    float alpha, const TileAddends& add);
  // The same with A read in place instead of packed: MR rows of a row-major A, element (i, k) at
  // a[i * lda + k]. For small M the packing of A is a transpose that costs about as much as a
  // quarter of the multiply; read in place, the MR rows (MR x kc floats) still stay in L1.
  void (*gemmMicroDirectA)(std::int64_t kc, const float* a, std::int64_t lda, const float* b, float* c,
                           std::int64_t ldc, float alpha, const TileAddends& add);
  // The same for only the first `rows` (1 to MR) rows of the tile, the others neither read nor
  // written: the last partial row tile of A (e.g. 197 = 16 x 12 + 5 tokens), which would
  // otherwise be packed, zero-padded and computed as a whole MR-row tile.
  void (*gemmMicroDirectRows)(int rows, std::int64_t kc, const float* a, std::int64_t lda, const float* b, float* c,
                              std::int64_t ldc, float alpha, const TileAddends& add);
  // Applies the bias / GELU / residual part of an epilogue to a rows x cols tile of C. `col0`
  // is the tile's first column (to index the bias), residual already points at the tile.
  void (*epilogueTile)(float* c, std::int64_t ldc, std::int64_t rows, std::int64_t cols,
                       const float* bias, bool gelu, const float* residual, std::int64_t ldr);

  // Elementwise over n floats. out may alias an input.
  void (*add)(const float* a, const float* b, float* out, std::int64_t n);
  void (*scale)(const float* a, float s, float* out, std::int64_t n);
  void (*gelu)(const float* x, float* y, std::int64_t n);
  void (*geluBackward)(const float* x, const float* dy, float* dx, std::int64_t n);

  // Row-wise over `rows` rows of `cols` floats, rows contiguous.
  void (*softmaxRows)(const float* x, float* y, std::int64_t rows, std::int64_t cols);
  void (*softmaxRowsBackward)(const float* y, const float* dy, float* dx, std::int64_t rows,
                              std::int64_t cols);
  // y = (x - mean) / sqrt(var + eps) * gamma + beta; mean and rstd (per row) saved when non-null.
  void (*layerNormRows)(const float* x, const float* gamma, const float* beta, float* y,
                        float* mean, float* rstd, std::int64_t rows, std::int64_t cols, float eps);
  // dx from dy and the saved mean/rstd, plus `passed` (the gradient that reaches x around the
  // norm, by a residual connection) when non-null; dgamma and dbeta are accumulated (+=) when
  // non-null.
  void (*layerNormRowsBackward)(const float* x, const float* gamma, const float* mean,
                                const float* rstd, const float* dy, const float* passed, float* dx,
                                float* dgamma, float* dbeta, std::int64_t rows, std::int64_t cols);
};

// out[c] += sum over the rows of x[r][c] (a bias gradient), rows in order.
inline void addRowsInto(const DenseKernels& kt, const float* x, std::int64_t rows, std::int64_t cols, float* out) {
  for (std::int64_t r = 0; r < rows; ++r) kt.add(out, x + r * cols, out, cols);
}

// The dense group of the active table (cpuKernels().dense, see cpu_kernels.h).
const DenseKernels& denseKernels();

}  // namespace castling::cpu
