// The ViT's data movement around the GEMMs and attention on the GPU (the CPU's
// ops_vit_layout.cpp): patch embedding (im2col + cuBLAS GEMM), assembling tokens (class token +
// position embedding), splitting qkv into heads and merging them back, picking the class token.
// Forward and backward side by side. Heads and tokens move in any element type; the patch
// embedding and token assembly are float32 (their parameters' gradients are summed in float32).
#include <vector>

#include "../ops/shape_checks.h"
#include "../ops/vit_layout_shapes.h"
#include "cuda_blas.h"
#include "cuda_kernels.cuh"
#include "cuda_ops.h"
#include "cuda_reduce.cuh"

namespace castling::cuda {

using ops::expectShape;

namespace {

// ---- patch embedding: a p x p, stride p convolution ----

using ops::PatchGeometry;

// The shared checks (cpu/vit_layout_shapes.h), then the element types this file handles.
PatchGeometry patchGeometry(const char* op, const Tensor& images, const Tensor& weight) {
  PatchGeometry g = ops::patchGeometry(op, images, weight);
  expectFloat32(op, "images", images);
  expectFloat32(op, "weight", weight);
  return g;
}

// cols[row = b * patches + p][(c * patch + y) * patch + x] = images[b][c][py * patch + y][px * patch + x]:
// one thread per output element, so that writes are coalesced.
__global__ void im2colKernel(const float* images, float* cols, PatchGeometry g) {
  const std::int64_t total = g.batch * g.patches() * g.columns();
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t row = i / g.columns(), col = i % g.columns();
    std::int64_t b = row / g.patches(), p = row % g.patches();
    std::int64_t py = p / g.gridW, px = p % g.gridW;
    std::int64_t c = col / (g.patch * g.patch), rest = col % (g.patch * g.patch);
    std::int64_t y = rest / g.patch, x = rest % g.patch;
    cols[i] = images[((b * g.channels + c) * g.height + py * g.patch + y) * g.width + px * g.patch + x];
  }
}

__global__ void addBiasKernel(float* out, const float* bias, std::int64_t n, std::int64_t cols) {
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += std::int64_t(gridDim.x) * blockDim.x)
    out[i] += bias[i % cols];
}

Tensor im2col(const Tensor& images, const PatchGeometry& g) {
  Tensor cols = deviceEmpty({g.batch * g.patches(), g.columns()});
  if (cols.numel() == 0) return cols;
  launch(im2colKernel, gridFor(cols.numel()), kThreads, 0, stream(), images.data(), cols.data(), g);
  CASTLING_CUDA_CHECK_LAUNCH();
  return cols;
}

std::vector<Tensor> patchEmbedOp(const OpInputs& in, const Attrs&) {
  const char* op = "patchEmbed";
  Tensor images = in.required(0, "images").contiguous(), weight = in.required(1, "weight").contiguous();
  PatchGeometry g = patchGeometry(op, images, weight);
  Tensor cols = im2col(images, g);
  Tensor out = deviceEmpty({g.batch, g.patches(), g.dim});
  gemm(denseGemm(g.batch * g.patches(), g.dim, g.columns(), cols.data(), false, weight.data(), true, out.data()));
  if (const Tensor* b = in.optional(2)) {
    Tensor bias = b->contiguous();
    expectShape(op, "bias", bias, {g.dim});
    expectFloat32(op, "bias", bias);
    if (out.numel()) {
      launch(addBiasKernel, gridFor(out.numel()), kThreads, 0, stream(), out.data(), bias.data(), out.numel(), g.dim);
      CASTLING_CUDA_CHECK_LAUNCH();
    }
  }
  return {out};
}

std::vector<Tensor> patchEmbedBackwardOp(const OpInputs& in, const Attrs&) {
  const char* op = "patchEmbedBackward";
  Tensor images = in.required(0, "images").contiguous(), weight = in.required(1, "weight").contiguous();
  Tensor dy = in.required(2, "dy").contiguous();
  PatchGeometry g = patchGeometry(op, images, weight);
  expectShape(op, "dy", dy, {g.batch, g.patches(), g.dim});
  expectFloat32(op, "dy", dy);
  Tensor cols = im2col(images, g);
  Tensor dweight = deviceEmpty(weight.shape());
  gemm(denseGemm(g.dim, g.columns(), g.batch * g.patches(), dy.data(), true, cols.data(), false, dweight.data()));
  Tensor dbias = deviceEmpty({g.dim});
  columnSums(g.batch * g.patches(), g.dim, MatrixTerm<float>{dy.data(), g.dim}, dbias.data());
  return {dweight, dbias};
}

// ---- tokens: [class token, patches...] + position embedding ----

__global__ void assembleKernel(const float* patches, const float* cls, const float* pos, float* x, std::int64_t B,
                               std::int64_t N, std::int64_t D) {
  const std::int64_t total = B * N * D;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t b = i / (N * D), rest = i % (N * D), n = rest / D, c = rest % D;
    float v = n == 0 ? cls[c] : patches[(b * (N - 1) + n - 1) * D + c];
    x[i] = v + pos[rest];
  }
}

__global__ void dropClassRowKernel(const float* dx, float* dpatches, std::int64_t B, std::int64_t N, std::int64_t D) {
  const std::int64_t total = B * (N - 1) * D;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t b = i / ((N - 1) * D), rest = i % ((N - 1) * D);
    dpatches[i] = dx[b * N * D + D + rest];
  }
}

std::int64_t tokenDim(const char* op, const Tensor& patches) {
  std::int64_t D = ops::tokenDim(op, patches);
  expectFloat32(op, "patches", patches);
  return D;
}

std::vector<Tensor> assembleTokensOp(const OpInputs& in, const Attrs&) {
  const char* op = "assembleTokens";
  Tensor patches = in.required(0, "patches").contiguous();
  std::int64_t D = tokenDim(op, patches), B = patches.dim(0), P = patches.dim(1), N = P + 1;
  Tensor cls = in.required(1, "clsToken").contiguous(), pos = in.required(2, "posEmbed").contiguous();
  expectShape(op, "clsToken", cls, {1, 1, D});
  expectShape(op, "posEmbed", pos, {1, N, D});
  expectFloat32(op, "clsToken", cls);
  expectFloat32(op, "posEmbed", pos);
  Tensor x = deviceEmpty({B, N, D});
  if (x.numel()) {
    launch(assembleKernel, gridFor(x.numel()), kThreads, 0, stream(), patches.data(), cls.data(), pos.data(), x.data(), B, N, D);
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  return {x};
}

std::vector<Tensor> assembleTokensBackwardOp(const OpInputs& in, const Attrs&) {
  const char* op = "assembleTokensBackward";
  Tensor dx = in.required(0, "dx").contiguous();
  std::int64_t D = tokenDim(op, dx), B = dx.dim(0), N = dx.dim(1), P = N - 1;
  if (N < 1) fail(op, ": dx has no tokens");
  Tensor dpatches = deviceEmpty({B, P, D}), dcls = deviceEmpty({1, 1, D}), dpos = deviceEmpty({1, N, D});
  if (dpatches.numel()) {
    launch(dropClassRowKernel, gridFor(dpatches.numel()), kThreads, 0, stream(), dx.data(), dpatches.data(), B, N, D);
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  // dpos sums dx over the batch; dcls is its class-token row (the same sums).
  columnSums(B, N * D, MatrixTerm<float>{dx.data(), N * D}, dpos.data());
  if (D) CASTLING_CUDA_CHECK(cudaMemcpyAsync(dcls.data(), dpos.data(), std::size_t(D) * sizeof(float), cudaMemcpyDeviceToDevice, stream()));
  return {dpatches, dcls, dpos};
}

// ---- heads: [B, N, parts * H * d] <-> parts x [B, H, N, d] ----

struct HeadPointers {
  void* p[3];
};

// One thread per element of the token layout; toHeads copies tokens -> heads, else back.
template <typename T>
__global__ void permuteHeadsKernel(T* tokens, HeadPointers heads, std::int64_t B, std::int64_t N, std::int64_t H, std::int64_t d,
                                   int parts, bool toHeads) {
  const std::int64_t row = std::int64_t(parts) * H * d, total = B * N * row;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < total; i += std::int64_t(gridDim.x) * blockDim.x) {
    std::int64_t r = i / row, e = i % row;
    std::int64_t b = r / N, n = r % N;
    std::int64_t p = e / (H * d), h = (e / d) % H, c = e % d;
    T* hd = static_cast<T*>(heads.p[p]) + ((b * H + h) * N + n) * d + c;
    if (toHeads) *hd = tokens[i];
    else tokens[i] = *hd;
  }
}

std::vector<Tensor> splitHeadsOp(const OpInputs& in, const Attrs& attrs) {
  const char* op = "splitHeads";
  Tensor x = in.required(0, "x").contiguous();
  // Named copies, not a structured binding: the kernel launch below captures them in a lambda.
  const ops::HeadSplit split = ops::headSplit(op, x, attrs);
  const std::int64_t B = split.batch, N = split.tokens, H = split.heads, d = split.width, parts = split.parts;
  std::vector<Tensor> out;
  HeadPointers ptrs{};
  for (std::int64_t p = 0; p < parts; ++p) {
    out.push_back(deviceEmpty({B, H, N, d}, x.dtype()));
    ptrs.p[p] = out.back().raw();
  }
  if (x.numel()) {
    withDType(x.dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch(permuteHeadsKernel<T>, gridFor(x.numel()), kThreads, 0, stream(), static_cast<T*>(x.raw()), ptrs, B, N, H, d, int(parts), true);
    });
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  return out;
}

std::vector<Tensor> mergeHeadsOp(const OpInputs& in, const Attrs&) {
  const char* op = "mergeHeads";
  std::vector<Tensor> parts = ops::mergeHeadsInputs(op, in);
  const Tensor& first = parts.front();
  for (std::size_t i = 1; i < parts.size(); ++i) expectSameDType(op, i == 1 ? "b" : "c", parts[i], first.dtype());
  std::int64_t B = first.dim(0), H = first.dim(1), N = first.dim(2), d = first.dim(3);
  Tensor out = deviceEmpty({B, N, std::int64_t(parts.size()) * H * d}, first.dtype());
  HeadPointers ptrs{};
  for (std::size_t p = 0; p < parts.size(); ++p) ptrs.p[p] = parts[p].raw();
  if (out.numel()) {
    withDType(first.dtype(), [&](auto tag) {
      using T = decltype(tag);
      launch(permuteHeadsKernel<T>, gridFor(out.numel()), kThreads, 0, stream(), static_cast<T*>(out.raw()), ptrs, B, N, H, d,
                                                                            int(parts.size()), false);
    });
    CASTLING_CUDA_CHECK_LAUNCH();
  }
  return {out};
}

// ---- the class token's row of each image ----

std::vector<Tensor> selectTokenOp(const OpInputs& in, const Attrs& attrs) {
  Tensor x = in.required(0, "x").contiguous();
  const auto [B, N, D, index] = ops::selectTokenShape(x, attrs);
  Tensor out = deviceEmpty({B, D}, x.dtype());
  std::size_t row = std::size_t(D) * x.elementSize();
  if (B && D) {
    CASTLING_CUDA_CHECK(cudaMemcpy2DAsync(out.raw(), row, static_cast<const char*>(x.raw()) + index * row, std::size_t(N) * row, row,
                                          std::size_t(B), cudaMemcpyDeviceToDevice, stream()));
  }
  return {out};
}

std::vector<Tensor> selectTokenBackwardOp(const OpInputs& in, const Attrs& attrs) {
  Tensor dy = in.required(0, "dy").contiguous();
  const auto [B, N, D, index] = ops::selectTokenBackwardShape(dy, attrs);
  Tensor dx = deviceZeros({B, N, D}, dy.dtype());
  std::size_t row = std::size_t(D) * dy.elementSize();
  if (B && D) {
    CASTLING_CUDA_CHECK(cudaMemcpy2DAsync(static_cast<char*>(dx.raw()) + index * row, std::size_t(N) * row, dy.raw(), row, row,
                                          std::size_t(B), cudaMemcpyDeviceToDevice, stream()));
  }
  return {dx};
}

}  // namespace

void registerVitLayoutOps(OpRegistry& r) {
  r.add(Device::Cuda, "patchEmbed", {"images", "weight", "bias"}, patchEmbedOp);
  r.add(Device::Cuda, "patchEmbedBackward", {"images", "weight", "dy"}, patchEmbedBackwardOp);
  r.add(Device::Cuda, "assembleTokens", {"patches", "clsToken", "posEmbed"}, assembleTokensOp);
  r.add(Device::Cuda, "assembleTokensBackward", {"dx"}, assembleTokensBackwardOp);
  r.add(Device::Cuda, "splitHeads", {"x"}, splitHeadsOp);
  r.add(Device::Cuda, "mergeHeads", {"a", "b", "c"}, mergeHeadsOp);
  r.add(Device::Cuda, "selectToken", {"x"}, selectTokenOp);
  r.add(Device::Cuda, "selectTokenBackward", {"dy"}, selectTokenBackwardOp);
}

}  // namespace castling::cuda
