#include "cuda_ops.h"

#include "../core/error.h"

namespace castling::cuda {

void registerCudaOps(OpRegistry& registry) {
  registerElementwiseOps(registry);
  registerLinearOps(registry);
  registerVitLayoutOps(registry);
  registerTrainOps(registry);
  registerAttentionSoftmaxOps(registry);
  registerAttentionLinearAngularOps(registry);
  registerSparsifinerOps(registry);
}

void expectFloat32(const std::string& op, const char* name, const Tensor& t) {
  if (t.dtype() != DType::Float32) {
    fail(op, ": ", name, " is ", dtypeName(t.dtype()), ", expected float32 (this op has no 16-bit version on cuda yet)");
  }
}

void expectSameDType(const std::string& op, const char* name, const Tensor& t, DType dtype) {
  if (t.dtype() != dtype) fail(op, ": ", name, " is ", dtypeName(t.dtype()), ", expected ", dtypeName(dtype), " like the first input");
}

}  // namespace castling::cuda
