#include "cpu_ops.h"

namespace castling::cpu {

void registerCpuOps(OpRegistry& registry) {
  registerElementwiseOps(registry);
  registerLinearOps(registry);
}

}  // namespace castling::cpu
