// Registration of the CPU ops into the op table. Each ops_*.cpp holds one family of ops with
// its shape checks, forward and backward side by side.
#pragma once
#include "../core/op_registry.h"

namespace castling::cpu {

void registerCpuOps(OpRegistry& registry);

void registerElementwiseOps(OpRegistry& registry);
void registerLinearOps(OpRegistry& registry);

}  // namespace castling::cpu
