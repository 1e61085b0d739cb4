// Emulated build only (native/cuda/emulation): the half type and its conversions.
#pragma once
#include "../half_precision.h"
