// The AVX2+FMA CPU kernel table. Compiled with -mavx2 -mfma: only reached after cpu_features.cpp
// has confirmed the CPU and OS support them.
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
// GCC's default register allocator spills one of the micro-kernel's 12 accumulators (15 of the
// 16 ymm registers are live in its loop) and shuffles the rest between registers: 98 instructions
// per 4 k steps, in cache 91% of one thread's FMA peak (`bench gemm`'s micro-kernel rows). The
// priority allocator finds the spill-free assignment: 89 instructions, 97-98%. Kept to this file,
// where it was measured (on AVX-512 it makes the loop worse).
#pragma GCC push_options
#pragma GCC optimize("ira-algorithm=priority")
#include "../../gemm_micro.inc"
#pragma GCC pop_options
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

const CpuKernels& avx2CpuKernels() {
  static const CpuKernels table = fillCpuKernels(Isa::Avx2);
  return table;
}

}  // namespace castling::cpu
