// The input checks and shapes of the ViT layout ops (patch embedding, token assembly, head split
// and merge, class-token selection), shared by the CPU ops (ops_vit_layout.cpp) and the CUDA ops
// (native/cuda/vit_layout.cu) so that both accept the same inputs and name the same faults. The
// CUDA side adds its element-type checks after these.
#pragma once
#include <cstdint>
#include <vector>

#include "../core/op_registry.h"
#include "shape_checks.h"

#ifdef __CUDACC__
#define CASTLING_HOST_DEVICE __host__ __device__
#else
#define CASTLING_HOST_DEVICE
#endif

namespace castling::ops {

// A p x p, stride p convolution of [batch, channels, height, width] images with a
// [dim, channels, p, p] weight.
struct PatchGeometry {
  std::int64_t batch, channels, height, width, dim, patch, gridH, gridW;
  CASTLING_HOST_DEVICE std::int64_t patches() const { return gridH * gridW; }
  CASTLING_HOST_DEVICE std::int64_t columns() const { return channels * patch * patch; }
};

inline PatchGeometry patchGeometry(const char* op, const Tensor& images, const Tensor& weight) {
  if (images.rank() != 4) fail(op, ": images has shape ", shapeToString(images.shape()), ", expected [batch, channels, height, width]");
  if (weight.rank() != 4 || weight.dim(2) != weight.dim(3)) {
    fail(op, ": weight has shape ", shapeToString(weight.shape()), ", expected [dim, channels, patch, patch]");
  }
  PatchGeometry g{images.dim(0), images.dim(1), images.dim(2), images.dim(3), weight.dim(0), weight.dim(2), 0, 0};
  if (weight.dim(1) != g.channels) fail(op, ": weight has ", weight.dim(1), " input channels, images have ", g.channels);
  if (g.patch < 1 || g.height % g.patch || g.width % g.patch) {
    fail(op, ": image size ", g.height, "x", g.width, " is not divisible by the patch size ", g.patch);
  }
  g.gridH = g.height / g.patch;
  g.gridW = g.width / g.patch;
  return g;
}

// The token width of [batch, patches or tokens, dim].
inline std::int64_t tokenDim(const char* op, const Tensor& patches) {
  if (patches.rank() != 3) fail(op, ": patches has shape ", shapeToString(patches.shape()), ", expected [batch, patches, dim]");
  return patches.dim(2);
}

// splitHeads: x [B, N, parts * H * d] into parts x [B, H, N, d].
struct HeadSplit {
  std::int64_t batch, tokens, heads, width, parts;
};

inline std::int64_t headsAttr(const char* op, const Attrs& attrs) {
  if (!attrs.has("heads")) fail(op, ": attribute 'heads' is missing");
  return attrs.integer("heads", 1, 1, 1 << 16);
}

inline HeadSplit headSplit(const char* op, const Tensor& x, const Attrs& attrs) {
  std::int64_t H = headsAttr(op, attrs), parts = attrs.integer("parts", 1, 1, 3);
  if (x.rank() != 3 || x.dim(2) % (parts * H)) {
    fail(op, ": x has shape ", shapeToString(x.shape()), ", expected [batch, tokens, ", parts, " x heads x headDim] with heads = ", H);
  }
  return {x.dim(0), x.dim(1), H, x.dim(2) / (parts * H), parts};
}

// mergeHeads: the inputs a (and the optional b, c), contiguous, all of a's [B, H, N, d] shape.
inline std::vector<Tensor> mergeHeadsInputs(const char* op, const OpInputs& in) {
  Tensor first = in.required(0, "a").contiguous();
  if (first.rank() != 4) fail(op, ": a has shape ", shapeToString(first.shape()), ", expected [batch, heads, tokens, headDim]");
  std::vector<Tensor> parts{first};
  for (std::size_t i = 1; i < in.size(); ++i)
    if (const Tensor* t = in.optional(i)) {
      parts.push_back(t->contiguous());
      expectShape(op, i == 1 ? "b" : "c", parts.back(), first.shape());
    }
  return parts;
}

// selectToken: row `index` (attr, default 0) of x [B, N, D]; its backward rebuilds [B, N, D]
// from dy [B, D] with N from the attr 'tokens'.
struct TokenPick {
  std::int64_t batch, tokens, dim, index;
};

inline TokenPick selectTokenShape(const Tensor& x, const Attrs& attrs) {
  if (x.rank() != 3) fail("selectToken: x has shape ", shapeToString(x.shape()), ", expected [batch, tokens, dim]");
  std::int64_t N = x.dim(1);
  // (With no token there is no row to select: reading "row 0" would read past an empty x.)
  if (N < 1) fail("selectToken: x has shape ", shapeToString(x.shape()), ", expected at least one token to select from");
  return {x.dim(0), N, x.dim(2), attrs.integer("index", 0, 0, N - 1)};
}

inline TokenPick selectTokenBackwardShape(const Tensor& dy, const Attrs& attrs) {
  if (dy.rank() != 2) fail("selectTokenBackward: dy has shape ", shapeToString(dy.shape()), ", expected [batch, dim]");
  std::int64_t N = attrs.integer("tokens", 1, 1, std::int64_t(1) << 30);
  return {dy.dim(0), N, dy.dim(1), attrs.integer("index", 0, 0, N - 1)};
}

}  // namespace castling::ops
