// NOT cuBLAS: the few cuBLAS declarations native/cuda/cuda_blas.cpp uses, as the cuBLAS API
// documents them, so that scripts/cuda-compile-check.sh can compile that file on a machine whose
// CUDA toolkit lacks cuBLAS. Never used by a real build (CMake requires the real cuBLAS). The
// declarations are the emulator's (one list for both stand-ins), over the toolkit's own runtime
// headers.
#pragma once
#include <cuda_runtime.h>
#include <library_types.h>

#include "../../native/cuda/emulation/include/cublas_declarations.h"
