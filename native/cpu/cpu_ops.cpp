#include "cpu_ops.h"

namespace castling::cpu {

void registerCpuOps(OpRegistry& registry) {
  registerElementwiseOps(registry);
  registerLinearOps(registry);
  registerVitLayoutOps(registry);
  registerTrainOps(registry);
  registerAttentionOps(registry);
  registerSparsifinerOps(registry);
}

}  // namespace castling::cpu
