// Emulated build only (native/cuda/emulation): the cuBLAS calls the backend makes, run by a plain
// loop on the host (blas.cpp). The declarations are shared with the compile check's stand-in.
#pragma once
#include "cuda_runtime.h"
#include "library_types.h"

#include "cublas_declarations.h"
