// The flash-style attention kernels (flash.cu), shared by softmax attention
// (attention_softmax.cu) and the auxiliary masked softmax branch of linear-angular attention
// (attention_linear_angular.cu), with the CPU kernels' semantics (native/cpu/attention_kernels.h,
// FlashForwardArgs / FlashBackwardArgs): never an N x N buffer; tiles of 32 keys in shared
// memory, each warp owning 4 query rows (forward, dq) or 4 key rows (dk, dv) with the head width
// spread over its lanes. Head widths up to 128.
#pragma once
#include <cstdint>

#include "../core/device.h"

namespace castling::cuda {

constexpr std::int64_t kFlashMaxWidth = 128;

struct FlashForward {
  const void* q;  // (heads, n, d) each, element type dtype
  const void* k;
  const void* v;
  void* out;      // softmax: softmax(s) v; masked: (M . A) v (dtype)
  float* lse;     // (heads, n): log-sum-exp of s = scale q k^T
  float* mass;    // masked only: row sums of M . A, M = A > tau
  std::int64_t heads = 0, n = 0, d = 0;
  float scale = 1.0f;
  bool masked = false;
  float tau = 0.0f;
  DType dtype = DType::Float32;
};

// Queues the forward on the backend's stream.
void flashForward(const FlashForward& f);

// Adds the gradients of out = (M . A) v (A recomputed from lse) into dq, dk, dv (float32):
//   ds = M A (dout v^T + lambda) - A rowTerm;  dq += scale ds k;  dk += scale ds^T q;  dv += (M A)^T dout
// rowTerm_n = sum_m A_nm dA_nm, from the caller (softmax: dout . y; aux: dz . out + lambda mass).
struct FlashBackward {
  const float* q;
  const float* k;
  const float* v;
  const float* dout;
  const float* lse;
  const float* rowTerm;
  float* dq;
  float* dk;
  float* dv;
  std::int64_t heads = 0, n = 0, d = 0;
  float scale = 1.0f;
  bool masked = false;
  float tau = 0.0f, lambda = 0.0f;
  // masked: a device flag; when it holds 0 (no row kept anything) the kernels add nothing at all,
  // so the gradients stay bit-identical to the branch being off (the CPU skips the call then).
  const int* anyKept = nullptr;
};

void flashBackward(const FlashBackward& b);

}  // namespace castling::cuda
