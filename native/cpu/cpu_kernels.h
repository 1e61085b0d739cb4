// The CPU kernel table: every kernel the CPU ops call, in three groups (dense: GEMM, elementwise
// and row kernels; attention; Sparsifiner), one table per instruction set (scalar, AVX2+FMA,
// AVX-512). Each ISA's table is filled in one place, its translation unit isa/<name>/kernels.cpp,
// compiled with that ISA's flags; the op layer looks up the active table and never names an ISA.
#pragma once
#include "../core/cpu_features.h"
#include "attention_kernels.h"
#include "dense_kernels.h"
#include "sparsifiner_kernels.h"

namespace castling::cpu {

struct CpuKernels {
  Isa isa;
  DenseKernels dense;
  AttentionKernels attention;
  SparsifinerKernels sparsifiner;
};

// The table of `isa`; throws castling::Error when this CPU cannot run it.
const CpuKernels& cpuKernelsFor(Isa isa);
// The table of the active ISA (CASTLING_CPU or the best the CPU supports).
const CpuKernels& cpuKernels();

// Each ISA's table, defined in isa/<name>/kernels.cpp.
const CpuKernels& scalarCpuKernels();
const CpuKernels& avx2CpuKernels();
const CpuKernels& avx512CpuKernels();

}  // namespace castling::cpu
