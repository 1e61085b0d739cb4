// Emulated build only (native/cuda/emulation): the CUDA runtime as the backend's sources see it,
// backed by host memory and the fiber scheduler. Never part of a shipped binary.
#pragma once
#include "../device_api.h"
#include "../runtime_api.h"
#include "library_types.h"
