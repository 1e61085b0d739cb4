// The CUDA versions of the ops, registered next to the CPU ones under the same names with the
// same inputs, attributes and outputs (the CPU op's comment is the contract), so one recorded
// plan runs on either device. One file per op family, kernels and the op layer together,
// forward and backward side by side:
//   elementwise.cu   add, scale, GELU, softmax, LayerNorm, cast, checkFinite
//   linear.cu        matmul, linear (cuBLAS + fused bias/GELU/residual epilogue), linearBackward
//   vit_layout.cu    patch embedding, tokens, heads, class token
//   train.cu         cross-entropy, AdamW, sumSquares, distillation, scaleBatch
//   attention_softmax.cu          flash softmax attention (+ the masked auxiliary branch)
//   attention_linear_angular.cu   fused linear-angular attention with its depthwise convolution
//   sparsifiner.cu   predictor (per-row top-k), sparse attention, reconstruction
// Every op queues its kernels on the backend's stream (cuda_context.h) and returns at once;
// only ops that must report an input error found on the device (cross-entropy labels, sparse
// attention indices) wait for their own kernels.
#pragma once
#include <string>

#include "../core/op_registry.h"
#include "../core/tensor.h"

namespace castling::cuda {

void registerCudaOps(OpRegistry& registry);

void registerElementwiseOps(OpRegistry& registry);
void registerLinearOps(OpRegistry& registry);
void registerVitLayoutOps(OpRegistry& registry);
void registerTrainOps(OpRegistry& registry);
void registerAttentionSoftmaxOps(OpRegistry& registry);
void registerAttentionLinearAngularOps(OpRegistry& registry);
void registerSparsifinerOps(OpRegistry& registry);

// A copy of a device tensor with another element type (float32 <-> bfloat16 / float16).
Tensor castTensor(const Tensor& t, DType dtype);

// Checks shared by the ops: the tensor's element type (float32 only, or any of the three).
void expectFloat32(const std::string& op, const char* name, const Tensor& t);
void expectSameDType(const std::string& op, const char* name, const Tensor& t, DType dtype);

// A new device tensor of `shape` with `dtype`.
inline Tensor deviceEmpty(const Shape& shape, DType dtype = DType::Float32) {
  return Tensor::empty(shape, dtype, Device::Cuda);
}
inline Tensor deviceZeros(const Shape& shape, DType dtype = DType::Float32) {
  return Tensor::zeros(shape, dtype, Device::Cuda);
}

}  // namespace castling::cuda
