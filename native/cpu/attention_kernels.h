// The attention group of the CPU kernel table (cpu_kernels.h), one instance per instruction set:
// the op layer (attention_softmax.cpp, attention_linear_angular.cpp) owns shapes, threads and
// buffers and calls these per-head, per-range kernels, compiled from attention_flash.inc and
// attention_angular.inc in each ISA's translation unit (isa/<name>/kernels.cpp).
//
// Every kernel works on ONE head: q, k, v, ... point at that head's (n, d) rows, per-token vectors
// (lse, norms) at its n values. The rows of the forward's q, k and v (and of the softmax
// backward's, and its dout) lie ld* floats apart (d when contiguous; splitHeads' views of the qkv
// projection are 3 H d apart), and so may the forwards' outputs y (H d apart when written in token
// order); every other operand and output is contiguous (row stride d). Kernels never allocate and never
// throw (they run inside pool workers, where an exception would end the process): they get a
// scratch area of the size the matching *ScratchFloats function asked for.
#pragma once
#include <cstdint>

#include "../ops/conv_form.h"

namespace castling::cpu {

// ---- softmax attention (flash style) and the masked auxiliary softmax branch ----

struct FlashForwardArgs {
  const float* q;
  const float* k;
  const float* v;
  std::int64_t ldq, ldk, ldv;
  std::int64_t n, d;
  float scale;     // scores s = scale * q.k
  bool maskedAux;  // false: softmax attention; true: the auxiliary branch (see below)
  float tau;       // maskedAux: entries with A <= tau are dropped
  // softmax:   out = softmax(s) v, lse = log-sum-exp of each row of s.
  // maskedAux: lse as above (a first pass over the keys), then A = exp(s - lse),
  //            out = (M . A) v and mass = row sums of M . A, with M = A > tau (a second pass).
  float* out;
  std::int64_t ldOut;  // out's row stride (softmax's y may be written in token order)
  float* lse;
  float* mass;  // maskedAux only
};

// Gradients of out = (M . A) v with A = softmax(s) recomputed from lse, for both branches:
//   dA    = M . (dout v^T + lambda)                     (softmax: M = 1, lambda = 0)
//   ds    = A . (dA - rowTerm)      rowTerm_n = sum_m A_nm dA_nm (the caller has it in O(N d):
//                                   softmax: rowsum(dy . y); aux: dz . out + lambda * mass)
//   dq   += scale * ds k,   dk += scale * ds^T q,   dv += (M . A)^T dout
struct FlashBackwardArgs {
  const float* q;
  const float* k;
  const float* v;
  const float* dout;
  const float* lse;
  const float* rowTerm;
  std::int64_t ldq, ldk, ldv, ldout;
  std::int64_t n, d;
  float scale;
  bool masked;
  float tau;
  float lambda;
  float* dq;  // all n rows (the caller gives each concurrent key range its own)
  float* dk;  // rows of the key range only
  float* dv;  // rows of the key range only
  std::int64_t lddq, lddk, lddv;  // their row strides
  bool accumulate;  // add to dq, dk and dv (else write them: they need no zero fill)
};

// ---- Castling-ViT linear-angular attention ----

using ops::ConvForm;

// The depthwise convolution of v that is added to the output (one head's kernel).
struct AngularConv {
  ConvForm form = ConvForm::Tokens;
  std::int64_t taps = 0;      // K: Tokens uses K weights along the token axis, Spatial K x K
  std::int64_t gridSide = 0;  // Spatial: the patch grid is gridSide x gridSide (n = 1 + side^2)
  const float* weight = nullptr;
};

struct AngularForwardArgs {
  const float* q;
  const float* k;
  const float* v;
  std::int64_t ldq, ldk, ldv;
  std::int64_t n, d;
  AngularConv conv;
  // Key pass outputs: knorm = max(|k|, eps) per token.
  float* knorm;
  // Apply pass inputs: S = sum_n khat_n^T v_n (d x d), and the auxiliary branch's output and
  // row mass (null when the branch is off; a row whose mass is 0 kept nothing and adds nothing).
  const float* S;
  const float* auxOut;
  const float* auxMass;
  // Apply pass outputs: qnorm, znorm per token and y = z / znorm + dconv(v) per row.
  float* qnorm;
  float* znorm;
  float* y;
  std::int64_t ldy;  // y's row stride (y may be written in token order)
};

struct AngularBackwardArgs {
  const float* q;
  const float* k;
  const float* v;
  const float* auxOut;   // as in AngularForwardArgs: z (and so u = z / znorm) is recomputed
  const float* auxMass;  // from these instead of being saved
  const float* qnorm;
  const float* knorm;
  const float* znorm;
  const float* S;
  const float* dy;
  std::int64_t n, d;
  AngularConv conv;
  const float* dS;  // key pass input: dL/dS (already including the 1/pi)
  float* dz;        // query pass output: dL/dz per row (the auxiliary branch's incoming gradient); null: not kept
  float* dq;        // query pass writes
  float* dk;        // key pass writes
  float* dv;        // query pass writes, key pass adds
  // Row strides of q, k, v and dy (splitHeads' views are read in place), and of dq, dk and dv
  // (one layout for the three: contiguous, or headsGradients' views). The rest are contiguous.
  std::int64_t ldq, ldk, ldv, ldy, ldGrad;
};

struct AttentionKernels {
  // Ranges handed to the flash kernels start at multiples of this (ends may be n).
  std::int64_t flashBlock;

  std::int64_t (*flashForwardScratchFloats)(std::int64_t n, std::int64_t d);
  std::int64_t (*maskedForwardScratchFloats)(std::int64_t n, std::int64_t d);  // flashForward with maskedAux
  void (*flashForward)(const FlashForwardArgs& args, std::int64_t queryBegin,
                       std::int64_t queryEnd, float* scratch);
  std::int64_t (*flashBackwardScratchFloats)(std::int64_t n, std::int64_t d);
  void (*flashBackward)(const FlashBackwardArgs& args, std::int64_t keyBegin,
                        std::int64_t keyEnd, float* scratch);

  std::int64_t (*angularScratchFloats)(std::int64_t d);
  // Writes knorm for tokens [begin, end) and sPartial (d x d) = sum over them of khat^T v.
  void (*angularKeys)(const AngularForwardArgs& args, std::int64_t begin, std::int64_t end,
                      float* sPartial, float* scratch);
  // z = 0.5 v + (1/pi) qhat S (+ auxOut), y = normalize(z) + dconv(v) on [begin, end).
  void (*angularApply)(const AngularForwardArgs& args, std::int64_t begin, std::int64_t end,
                       float* scratch);
  // On [begin, end): dz, dq (from qhat), dv (0.5 dz and the conv's transpose); dSPartial
  // (d x d) = (1/pi) sum qhat^T dz and dwPartial (K or K*K) = the conv weight's gradient there.
  void (*angularBackwardQueries)(const AngularBackwardArgs& args, std::int64_t begin,
                                 std::int64_t end, float* dSPartial, float* dwPartial,
                                 float* scratch);
  // On [begin, end): dk from khat = v dS^T, and dv += khat dS.
  void (*angularBackwardKeys)(const AngularBackwardArgs& args, std::int64_t begin,
                              std::int64_t end, float* scratch);
};

// The attention group of the active table (cpuKernels().attention, see cpu_kernels.h).
const AttentionKernels& attentionKernels();

}  // namespace castling::cpu
