// The input checks and attributes of linear-angular attention (attentionLinearAngular and its
// backward), shared by the CPU ops (attention_linear_angular.cpp) and the CUDA ops
// (native/cuda/attention_linear_angular.cu) so that both accept the same inputs and name the same
// faults. The CUDA side adds its element-type checks after each group of tensors is read, and its
// head-width limit after the options.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

#include "../core/op_registry.h"
#include "conv_form.h"
#include "heads_shape.h"
#include "shape_checks.h"

namespace castling::ops {

// The most taps per side of the convolution of v (the CPU kernels keep its weight gradient in a
// 64 x 64 array).
constexpr std::int64_t kMaxAngularTaps = 63;

struct AngularOptions {
  ConvForm form = ConvForm::Tokens;
  std::int64_t taps = 0, gridSide = 0;
  std::int64_t weightsPerHead = 0;
  bool aux = false;
  float tau = 0.02f;
  float auxScale = 1.0f;
  float lambda = 0.0f;
};

// The attributes form (0), aux (0), tau (0.02), auxScale (1/sqrt(d)) and l1 (0).
inline AngularOptions angularAttrs(const char* op, const Attrs& attrs, std::int64_t width) {
  AngularOptions o;
  o.form = ConvForm(attrs.integer("form", 0, 0, 1));
  o.aux = attrs.flag("aux", false);
  o.tau = float(attrs.number("tau", 0.02));
  o.auxScale = float(attrs.number("auxScale", 1.0 / std::sqrt(double(width))));
  o.lambda = float(attrs.number("l1", 0.0));
  if (std::isnan(o.tau)) fail(op, ": tau is NaN, expected a threshold");
  if (!std::isfinite(o.auxScale)) fail(op, ": auxScale is ", o.auxScale, ", expected a finite number");
  if (!std::isfinite(o.lambda)) fail(op, ": l1 is ", o.lambda, ", expected a finite number");
  return o;
}

// The side of the square patch grid the 'spatial' convolution runs over: N - 1 patch tokens
// after the class token.
inline std::int64_t spatialGridSide(const char* op, std::int64_t tokens) {
  std::int64_t patches = tokens - 1;
  std::int64_t side = std::int64_t(std::llround(std::sqrt(double(std::max<std::int64_t>(patches, 0)))));
  if (patches < 1 || side * side != patches) {
    fail(op, ": the 'spatial' convolution needs N - 1 patch tokens forming a square grid, but N = ", tokens,
         " gives ", patches, " patches");
  }
  return side;
}

// Sets o.taps, o.weightsPerHead and (spatial) o.gridSide from dconvWeight: (H, K) for the
// 'tokens' convolution, (H, K, K) for the 'spatial' one, K odd and at most kMaxAngularTaps.
inline void readConvShape(const char* op, const HeadsShape& s, const Tensor& weight, AngularOptions& o) {
  const Shape& ws = weight.shape();
  if (o.form == ConvForm::Tokens) {
    if (weight.rank() != 2 || ws[0] != s.heads) {
      fail(op, ": dconvWeight has shape ", shapeToString(ws), ", expected [", s.heads,
           ", K] (one kernel of K taps per head) for the 'tokens' convolution");
    }
    o.taps = ws[1];
    o.weightsPerHead = o.taps;
  } else {
    if (weight.rank() != 3 || ws[0] != s.heads || ws[1] != ws[2]) {
      fail(op, ": dconvWeight has shape ", shapeToString(ws), ", expected [", s.heads,
           ", K, K] (one K x K kernel per head) for the 'spatial' convolution");
    }
    o.taps = ws[1];
    o.weightsPerHead = o.taps * o.taps;
    o.gridSide = spatialGridSide(op, s.tokens);
  }
  if (o.taps % 2 == 0 || o.taps < 1 || o.taps > kMaxAngularTaps) {
    fail(op, ": dconvWeight has ", o.taps, " taps per side, expected an odd number from 1 to ", kMaxAngularTaps,
         " (the kernel is centred on the token)");
  }
}

inline AngularOptions readAngularOptions(const char* op, const Attrs& attrs, const HeadsShape& s, const Tensor& weight) {
  AngularOptions o = angularAttrs(op, attrs, s.width);
  readConvShape(op, s, weight, o);
  return o;
}

// What both passes of both ops start from: q, k, v (B, H, N, d) and the convolution weight.
struct AngularInputs {
  Tensor q, k, v, weight;
  HeadsShape s;
  AngularOptions o;
};

// Inputs 0-3 (q, k, v, dconvWeight), contiguous, k and v shaped like q; leaves o to
// readAngularOptions.
// With rowsInPlace, q, k and v whose rows are dense are taken as they are (headsOperand).
inline AngularInputs readAngularTensors(const char* op, const OpInputs& in, bool rowsInPlace = false) {
  AngularInputs a;
  a.q = headsOperand(in.required(0, "q"), rowsInPlace);
  a.k = headsOperand(in.required(1, "k"), rowsInPlace);
  a.v = headsOperand(in.required(2, "v"), rowsInPlace);
  a.weight = in.required(3, "dconvWeight").contiguous();
  a.s = expectQkvHeads(op, a.q, a.k, a.v);
  return a;
}

// The forward's saved outputs and the gradient the backward always takes (inputs 4-7 and 11).
struct AngularSaved {
  Tensor qnorm, knorm, S, znorm, dy;
};

// With rowsInPlace, a dy whose rows are dense (splitHeads' view of the projection's gradient) is
// taken as it is, as readAngularTensors takes q, k and v.
inline AngularSaved readAngularSaved(const char* op, const OpInputs& in, const HeadsShape& s,
                                     bool rowsInPlace = false) {
  AngularSaved t{in.required(4, "qnorm").contiguous(), in.required(5, "knorm").contiguous(),
                 in.required(6, "S").contiguous(), in.required(7, "znorm").contiguous(),
                 headsOperand(in.required(11, "dy"), rowsInPlace)};
  expectShape(op, "qnorm", t.qnorm, s.perToken());
  expectShape(op, "knorm", t.knorm, s.perToken());
  expectShape(op, "S", t.S, {s.batch, s.heads, s.width, s.width});
  expectShape(op, "znorm", t.znorm, s.perToken());
  expectShape(op, "dy", t.dy, s.full());
  return t;
}

// The auxiliary branch's saved outputs (inputs 8-10), which the backward takes only with aux.
struct AngularAuxSaved {
  Tensor lse, auxOut, auxMass;
};

inline AngularAuxSaved readAngularAuxSaved(const char* op, const OpInputs& in, const HeadsShape& s) {
  AngularAuxSaved t{in.required(8, "lse").contiguous(), in.required(9, "auxOut").contiguous(),
                    in.required(10, "auxMass").contiguous()};
  expectShape(op, "lse", t.lse, s.perToken());
  expectShape(op, "auxOut", t.auxOut, s.full());
  expectShape(op, "auxMass", t.auxMass, s.perToken());
  return t;
}

}  // namespace castling::ops
