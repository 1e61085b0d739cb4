// One AdamW update of one parameter, shared by the CPU op (native/cpu/ops_train.cpp) and the CUDA
// kernel (native/cuda/train.cu) so that both follow the same rule in the same order.
//
// The moments never hold subnormal floats: a moment that would decay below the smallest normal
// float is stored as zero, and a gradient too small for its term of m or v to be normal adds
// nothing to that moment. On x86 CPUs an instruction whose result (or input) is subnormal takes a
// microcode assist of a hundred cycles or more, and a parameter whose gradient stays zero decays
// its m below the normal range in about 800 steps (b1 = 0.9) and stays there for ~150 more: the
// CPU update of 4 million such parameters took 28 times as long as of ordinary ones. What is
// dropped is below about 3e-38 in m and v, and changes the parameter by less than lr * 1e-10; the
// step itself is zero where it would be subnormal (m ran down while v stayed large).
#pragma once
#include <cfloat>
#include <cmath>

#ifdef __CUDACC__
#define CASTLING_ADAMW_HD __host__ __device__
#else
#define CASTLING_ADAMW_HD
#endif

namespace castling::ops {

// The factors of one step, the same for every parameter.
struct AdamwStep {
  float b1, b2;      // the moments' decay rates, in [0, 1)
  float lr, eps;
  float decay;       // 1 - lr * weightDecay
  float c1, c2;      // the bias corrections 1 / (1 - b^t)
  float clip;        // the gradient's scale from clipping by norm (1 without)
  // Below these (in magnitude) the term they guard would be subnormal, and is zero instead: the
  // old m and v before their decay, the scaled gradient before its terms of m and of v.
  float mDecayFloor, vDecayFloor, gradFloor, mGradFloor, vGradFloor;
  // Below this the step lr * (corrected m over its denominator) would be subnormal, and is zero.
  float updateFloor;
};

// A floor as a float (an attribute such as a decay rate of 1e-300 puts it past the float range,
// where every value counts as below it).
CASTLING_ADAMW_HD inline float floatFloor(double floor) { return floor < FLT_MAX ? float(floor) : FLT_MAX; }

// The factors of update number `step` (1 for the first).
CASTLING_ADAMW_HD inline AdamwStep adamwStep(double lr, double b1, double b2, double eps, double weightDecay,
                                             double step, float clip) {
  const double smallest = 2.0 * FLT_MIN;  // (twice the smallest normal: room for the floats' rounding)
  AdamwStep s;
  s.b1 = float(b1);
  s.b2 = float(b2);
  s.lr = float(lr);
  s.eps = float(eps);
  s.decay = float(1 - lr * weightDecay);
  s.c1 = float(1 / (1 - pow(b1, step)));
  s.c2 = float(1 / (1 - pow(b2, step)));
  s.clip = clip;
  // (A decay rate of 0 forgets the old moment whatever it is: every old value counts as below.)
  s.mDecayFloor = b1 > 0 ? floatFloor(smallest / b1) : INFINITY;
  s.vDecayFloor = b2 > 0 ? floatFloor(smallest / b2) : INFINITY;
  s.gradFloor = floatFloor(smallest / clip);
  s.mGradFloor = s.b1 < 1 ? floatFloor(smallest / (1 - double(s.b1))) : INFINITY;
  s.vGradFloor = s.b2 < 1 ? floatFloor(sqrt(smallest / (1 - double(s.b2)))) : INFINITY;
  s.updateFloor = lr > 0 ? floatFloor(smallest / lr) : INFINITY;
  return s;
}

// (Each guard picks the operand, not the product: a compiler may compute both sides of a select,
// and the product of a dropped side would still make its subnormal.)
CASTLING_ADAMW_HD inline void adamwUpdate(const AdamwStep& s, float grad, float& param, float& m, float& v) {
  const float g = (fabsf(grad) < s.gradFloor ? 0.0f : grad) * s.clip;
  const float mNew = s.b1 * (fabsf(m) < s.mDecayFloor ? 0.0f : m) + (1 - s.b1) * (fabsf(g) < s.mGradFloor ? 0.0f : g);
  // (The two terms of m can cancel to a subnormal; v's are never negative.)
  m = fabsf(mNew) < FLT_MIN ? 0.0f : mNew;
  const float gv = fabsf(g) < s.vGradFloor ? 0.0f : g;
  v = s.b2 * (v < s.vDecayFloor ? 0.0f : v) + (1 - s.b2) * gv * gv;
  const float update = (m * s.c1) / (sqrtf(v * s.c2) + s.eps);
  param = param * s.decay - s.lr * (fabsf(update) < s.updateFloor ? 0.0f : update);
}

}  // namespace castling::ops
