// The AVX-512 CPU kernel table. Compiled with -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma:
// only reached after cpu_features.cpp has confirmed the CPU and OS support those instructions.
//
// The one place this ISA's table is filled: every kernel body is included here, inside an
// anonymous namespace (see vector_math.inc why), the three groups in namespaces of their own so
// that same-named helpers of different groups (softmaxRows, ...) do not meet.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>

#include "../../cpu_kernels.h"
#include "../../panel_packing.h"

namespace castling::cpu {
namespace {

// Shared by the groups: exp/erf approximations, row reductions, this ISA's SIMD vocabulary and the
// rank-update building blocks written in it.
#include "../../vector_math.inc"
#include "../../row_reduce.inc"
#include "simd.inc"
#include "../../attention_simd.inc"

namespace dense {
#include "../../elementwise.inc"
#include "../../gemm_micro.inc"
#include "../../gemm_rows.inc"
}  // namespace dense

namespace attention {
#include "../../attention_flash.inc"
#include "../../attention_angular.inc"
}  // namespace attention

namespace sparsifiner {
#include "../../sparsifiner_kernels.inc"
}  // namespace sparsifiner

#include "../fill_cpu_kernels.inc"

}  // namespace

const CpuKernels& avx512CpuKernels() {
  static const CpuKernels table = fillCpuKernels(Isa::Avx512);
  return table;
}

}  // namespace castling::cpu
