// Emulated build only (native/cuda/emulation): the bfloat16 type and its conversions.
#pragma once
#include "../half_precision.h"
