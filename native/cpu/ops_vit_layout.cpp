// The ViT's data movement around the GEMMs and attention: patch embedding (im2col + GEMM),
// assembling tokens (class token + position embedding), splitting qkv into heads and merging
// heads back, and picking the class token. Each forward and its backward side by side.
#include <algorithm>
#include <cstring>
#include <vector>

#include "../core/thread_pool.h"
#include "cpu_ops.h"
#include "gemm.h"
#include "dense_kernels.h"
#include "../ops/heads_shape.h"
#include "../ops/shape_checks.h"
#include "../ops/vit_layout_shapes.h"

namespace castling::cpu {

using namespace ops;

namespace {

// ---- patch embedding: a p x p, stride p convolution ----

// Unfolds images into rows of one patch each: [batch * patches, channels * p * p], ordered
// (channel, row, column) within a patch to match a PyTorch conv weight [dim, channels, p, p].
Tensor im2col(const Tensor& images, const PatchGeometry& g) {
  Tensor cols = Tensor::empty({g.batch * g.patches(), g.columns()});
  ThreadPool::global().parallelFor(g.batch * g.patches(), 16, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      std::int64_t b = r / g.patches(), p = r % g.patches();
      std::int64_t py = p / g.gridW, px = p % g.gridW;
      float* out = cols.data() + r * g.columns();
      for (std::int64_t c = 0; c < g.channels; ++c) {
        for (std::int64_t y = 0; y < g.patch; ++y) {
          const float* src = images.data() + ((b * g.channels + c) * g.height + py * g.patch + y) * g.width + px * g.patch;
          std::memcpy(out + (c * g.patch + y) * g.patch, src, std::size_t(g.patch) * sizeof(float));
        }
      }
    }
  });
  return cols;
}

std::vector<Tensor> patchEmbedOp(const OpInputs& in, const Attrs&) {
  const char* op = "patchEmbed";
  Tensor images = in.required(0, "images").contiguous(), weight = in.required(1, "weight").contiguous();
  PatchGeometry g = patchGeometry(op, images, weight);
  Tensor cols = im2col(images, g);
  Tensor out = Tensor::empty({g.batch, g.patches(), g.dim});
  // out = cols W^T + b with W viewed as [dim, channels * p * p].
  GemmArgs args = denseGemm(g.batch * g.patches(), g.dim, g.columns(), cols.data(), false, weight.data(), true, out.data());
  Tensor bias;
  if (const Tensor* b = in.optional(2)) {
    bias = b->contiguous();
    expectShape(op, "bias", bias, {g.dim});
    args.epilogue.bias = bias.data();
  }
  sgemm(args);
  return {out};
}

// Gradients of the weight and bias (the images need none): dW = dy^T cols, db = column sums.
std::vector<Tensor> patchEmbedBackwardOp(const OpInputs& in, const Attrs&) {
  const char* op = "patchEmbedBackward";
  Tensor images = in.required(0, "images").contiguous(), weight = in.required(1, "weight").contiguous();
  Tensor dy = in.required(2, "dy").contiguous();
  PatchGeometry g = patchGeometry(op, images, weight);
  expectShape(op, "dy", dy, {g.batch, g.patches(), g.dim});
  Tensor cols = im2col(images, g);
  Tensor dweight = Tensor::empty(weight.shape());
  sgemm(denseGemm(g.dim, g.columns(), g.batch * g.patches(), dy.data(), true, cols.data(), false, dweight.data()));
  Tensor dbias = Tensor::zeros({g.dim});
  addRowsInto(denseKernels(), dy.data(), g.batch * g.patches(), g.dim, dbias.data());
  return {dweight, dbias};
}

// ---- tokens: [class token, patches...] + position embedding ----

std::vector<Tensor> assembleTokensOp(const OpInputs& in, const Attrs&) {
  const char* op = "assembleTokens";
  Tensor patches = in.required(0, "patches").contiguous();
  std::int64_t D = tokenDim(op, patches), B = patches.dim(0), P = patches.dim(1), N = P + 1;
  Tensor cls = in.required(1, "clsToken").contiguous(), pos = in.required(2, "posEmbed").contiguous();
  expectShape(op, "clsToken", cls, {1, 1, D});
  expectShape(op, "posEmbed", pos, {1, N, D});
  Tensor x = Tensor::empty({B, N, D});
  const DenseKernels& kt = denseKernels();
  // (Here and below: with no values per image, a huge batch of empty rows is no work at all.)
  if (D == 0) return {x};
  // Token rows over the pool: a serial copy of the whole batch held the other threads idle.
  ThreadPool::global().parallelFor(B * N, std::max<std::int64_t>(1, (1 << 14) / D), [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t row = begin; row < end; ++row) {
      std::int64_t b = row / N, n = row % N;
      const float* source = n == 0 ? cls.data() : patches.data() + (b * P + n - 1) * D;
      kt.add(source, pos.data() + n * D, x.data() + row * D, D);
    }
  });
  return {x};
}

std::vector<Tensor> assembleTokensBackwardOp(const OpInputs& in, const Attrs&) {
  const char* op = "assembleTokensBackward";
  Tensor dx = in.required(0, "dx").contiguous();
  std::int64_t D = tokenDim(op, dx), B = dx.dim(0), N = dx.dim(1), P = N - 1;
  if (N < 1) fail(op, ": dx has no tokens");
  Tensor dpatches = Tensor::empty({B, P, D}), dcls = Tensor::zeros({1, 1, D}), dpos = Tensor::zeros({1, N, D});
  const DenseKernels& kt = denseKernels();
  for (std::int64_t b = 0; b < B && D > 0; ++b) {
    const float* g = dx.data() + b * N * D;
    std::memcpy(dpatches.data() + b * P * D, g + D, std::size_t(P * D) * sizeof(float));
    kt.add(dcls.data(), g, dcls.data(), D);
    kt.add(dpos.data(), g, dpos.data(), N * D);
  }
  return {dpatches, dcls, dpos};
}

// ---- heads: [B, N, 3C] (q | k | v, each H heads of d) <-> three [B, H, N, d] ----

// Views, not copies: part p's head h of image b is the (p, h) block of d columns of that image's
// token rows, whose rows lie parts * H * d apart. The attention ops read q, k and v in place with
// that row stride (their kernels pack or stream them anyway); any other op copies them with
// contiguous(). A pass saves the copy and one pool job per block (DeiT-S predict, 2 threads:
// batch 1 castling 1% less wall time, batch 8 softmax 2.5%).
std::vector<Tensor> splitHeadsOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "splitHeads";
  Tensor x = in.required(0, "x").contiguous();
  const auto [B, N, H, d, parts] = headSplit(op, x, attrs);
  return headsInTokenRows(x, HeadsShape{B, H, N, d}, parts);
}

// Gathers `parts` tensors [B, H, N, d] into [B, N, parts * H * d] rows.
void gatherHeads(const std::vector<Tensor>& heads, std::int64_t B, std::int64_t N, std::int64_t H, std::int64_t d,
                 float* tokens) {
  std::int64_t parts = std::int64_t(heads.size()), row = parts * H * d;
  // Nothing to copy: an empty head width must not walk every (token, head) pair of a shape such
  // as [2^20, 2^16, 0], which would copy zero bytes for minutes.
  if (row == 0) return;
  ThreadPool::global().parallelFor(B * N, 64, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      std::int64_t b = r / N, n = r % N;
      for (std::int64_t p = 0; p < parts; ++p)
        for (std::int64_t h = 0; h < H; ++h)
          std::memcpy(tokens + r * row + (p * H + h) * d, heads[std::size_t(p)].data() + ((b * H + h) * N + n) * d,
                      std::size_t(d) * sizeof(float));
    }
  });
}

// Whether parts, in order, are the (B, H, N, d) views that lie in the token rows of all of one
// storage (headsInTokenRowsStrides): an attention output written in token order (headsOutput,
// attention_common.h), or a backward's dq, dk and dv (headsGradients). That storage is already
// the merged rows.
bool areTokenOrderHeads(const std::vector<Tensor>& parts) {
  const Tensor& first = parts.front();
  if (first.rank() != 4 || !first.storage()) return false;
  const HeadsShape heads{first.dim(0), first.dim(1), first.dim(2), first.dim(3)};
  const std::int64_t count = std::int64_t(parts.size());
  for (std::int64_t p = 0; p < count; ++p) {
    const Tensor& t = parts[std::size_t(p)];
    if (t.storage() != first.storage() || t.shape() != first.shape() ||
        t.strides() != headsInTokenRowsStrides(heads, count) || t.storageOffset() != p * heads.heads * heads.width)
      return false;
  }
  return first.storage()->size() == count * first.numel();
}

std::vector<Tensor> mergeHeadsOp(const OpInputs& in, const Attrs&) {
  std::vector<Tensor> given{in.required(0, "a")};
  for (int i : {1, 2}) {
    const Tensor* t = in.optional(i);
    if (!t) break;
    given.push_back(*t);
  }
  if (areTokenOrderHeads(given)) {
    const Tensor& a = given.front();
    const std::int64_t N = a.dim(2), row = std::int64_t(given.size()) * a.dim(1) * a.dim(3);
    return {a.strided({a.dim(0), N, row}, {N * row, row, 1}, 0)};
  }
  std::vector<Tensor> parts = mergeHeadsInputs("mergeHeads", in);
  const Tensor& first = parts.front();
  std::int64_t B = first.dim(0), H = first.dim(1), N = first.dim(2), d = first.dim(3);
  Tensor out = Tensor::empty({B, N, std::int64_t(parts.size()) * H * d});
  gatherHeads(parts, B, N, H, d, out.data());
  return {out};
}

// ---- the class token's row of each image ----

std::vector<Tensor> selectTokenOp(const OpInputs& in, const Attrs& attrs) {
  Tensor x = in.required(0, "x").contiguous();
  const auto [B, N, D, index] = selectTokenShape(x, attrs);
  Tensor out = Tensor::empty({B, D});
  for (std::int64_t b = 0; b < B && D > 0; ++b) std::memcpy(out.data() + b * D, x.data() + (b * N + index) * D, std::size_t(D) * sizeof(float));
  return {out};
}

std::vector<Tensor> selectTokenBackwardOp(const OpInputs& in, const Attrs& attrs) {
  Tensor dy = in.required(0, "dy").contiguous();
  const auto [B, N, D, index] = selectTokenBackwardShape(dy, attrs);
  Tensor dx = Tensor::zerosOnPool({B, N, D});
  for (std::int64_t b = 0; b < B && D > 0; ++b) std::memcpy(dx.data() + (b * N + index) * D, dy.data() + b * D, std::size_t(D) * sizeof(float));
  return {dx};
}

}  // namespace

void registerVitLayoutOps(OpRegistry& r) {
  r.add("patchEmbed", {"images", "weight", "bias"}, patchEmbedOp);
  r.add("patchEmbedBackward", {"images", "weight", "dy"}, patchEmbedBackwardOp);
  r.add("assembleTokens", {"patches", "clsToken", "posEmbed"}, assembleTokensOp);
  r.add("assembleTokensBackward", {"dx"}, assembleTokensBackwardOp);
  r.add("splitHeads", {"x"}, splitHeadsOp);
  r.add("mergeHeads", {"a", "b", "c"}, mergeHeadsOp);
  r.add("selectToken", {"x"}, selectTokenOp);
  r.add("selectTokenBackward", {"dy"}, selectTokenBackwardOp);
}

}  // namespace castling::cpu
