// C++ tests of the CUDA ops (built only with CUDA; run by ctest and scripts/cuda-check.sh): each
// op runs on the CPU and on the GPU with the same fresh random inputs of awkward shapes, and every
// output must agree to a relative error of 1e-5 in float32 (2e-2 with bfloat16 storage), measured
// against the largest magnitude of the CPU's output (never less than a floor, 0.01 unless a test
// says otherwise: a gradient that vanishes exactly, as with one token, leaves only rounding). Backward ops get their saved inputs from the
// CPU forward, so each op is checked on its own. Without a usable GPU the program says why and
// reports 0 tests (ctest passes: there is nothing to check on such a machine).
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "../core/device_backend.h"
#include "../core/op_registry.h"
#include "../cpu/cpu_ops.h"
#include "../cuda/cuda_context.h"
#include "op_helpers.h"
#include "test_util.h"

using namespace castling;
using namespace castling::test;

namespace {

Tensor rand(const Shape& shape, float scale = 1.0f) {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return tensorOf(shape, randomVector(std::size_t(n), scale));
}

using Inputs = std::vector<std::optional<Tensor>>;

Inputs onDevice(const Inputs& in, Device device, std::optional<DType> dtype = std::nullopt) {
  Inputs out;
  for (const auto& t : in) {
    if (!t) {
      out.emplace_back();
      continue;
    }
    Tensor moved = t->to(device);
    if (dtype && *dtype != DType::Float32) moved = runOp("cast", {moved}, [&] { Attrs a; a.set("dtype", double(int(*dtype))); return a; }())[0];
    out.emplace_back(moved);
  }
  return out;
}

double largestMagnitude(const Tensor& t) {
  Tensor c = t.contiguous();
  double m = 0;
  for (std::int64_t i = 0; i < c.numel(); ++i) m = std::max(m, double(std::abs(c.data()[i])));
  return m;
}

// The worst |gpu - cpu| / max(max|cpu|, floor) over an output (NaN-aware), after copying the
// GPU's back.
double relativeError(const Tensor& cpuResult, const Tensor& gpu, double floor = 0.01) {
  Tensor back = gpu.to(Device::Cpu), cpu = cpuResult.contiguous();  // the cpu's splitHeads gives views
  if (back.shape() != cpu.shape()) return INFINITY;
  double scale = std::max(floor, largestMagnitude(cpu)), worst = 0;
  for (std::int64_t i = 0; i < cpu.numel(); ++i) {
    double e = std::abs(double(back.data()[i]) - double(cpu.data()[i])) / scale;
    if (!(e <= worst)) worst = e;
  }
  return worst;
}

// Whether each output (or each listed in `outputs`) of the two devices agrees to `tol`, measured
// against floorOf(output) at least.
bool agree(const std::string& op, const std::vector<Tensor>& cpu, const std::vector<Tensor>& gpu, double tol,
           const std::vector<int>& outputs, const std::function<double(std::size_t)>& floorOf) {
  bool ok = cpu.size() == gpu.size();
  if (!ok) std::fprintf(stderr, "  %s: %zu outputs on the cpu, %zu on cuda\n", op.c_str(), cpu.size(), gpu.size());
  for (std::size_t o = 0; ok && o < cpu.size(); ++o) {
    if (!outputs.empty() && std::find(outputs.begin(), outputs.end(), int(o)) == outputs.end()) continue;
    double e = relativeError(cpu[o], gpu[o], floorOf(o));
    if (!(e <= tol)) {
      std::fprintf(stderr, "  %s output %zu %s: relative error %g > %g\n", op.c_str(), o, shapeToString(cpu[o].shape()).c_str(), e, tol);
      ok = false;
    }
  }
  return ok;
}

// Runs `op` on both devices and compares every output (or those listed in `outputs`).
bool compare(const std::string& op, const Inputs& in, const Attrs& attrs, double tol = 1e-5, std::optional<DType> dtype = std::nullopt,
             std::vector<int> outputs = {}, double floor = 0.01) {
  std::vector<Tensor> cpu = runOp(op, in, attrs);
  std::vector<Tensor> gpu = runOp(op, onDevice(in, Device::Cuda, dtype), attrs);
  return agree(op, cpu, gpu, tol, outputs, [&](std::size_t) { return floor; });
}

Attrs attrs(std::initializer_list<std::pair<const char*, double>> values) {
  Attrs a;
  for (auto& [k, v] : values) a.set(k, v);
  return a;
}

// ---- elementwise, layerNorm ----

TEST(cuda_elementwise) {
  Tensor x = rand({7, 197, 5}), b = rand({5}), same = rand({7, 197, 5});
  CHECK(compare("add", {x, b}, {}));
  CHECK(compare("add", {x, same}, {}));
  CHECK(compare("scale", {rand({1153})}, attrs({{"scale", 0.7}})));
  Tensor g = rand({3, 1153}, 4.0f);
  CHECK(compare("gelu", {g}, {}));
  CHECK(compare("geluBackward", {g, rand({3, 1153})}, {}));
  Tensor s = rand({13, 197}, 3.0f);
  CHECK(compare("softmax", {s}, {}));
  CHECK(compare("softmaxBackward", {runOp("softmax", {s}, {})[0], rand({13, 197})}, {}));
  CHECK(compare("checkFinite", {s}, {}));
}

TEST(cuda_layer_norm) {
  for (std::int64_t cols : {1, 5, 96, 385}) {
    Tensor x = rand({2, 17, cols}, 2.0f), w = rand({cols}), b = rand({cols}), dy = rand({2, 17, cols});
    CHECK(compare("layerNorm", {x, w, b}, {}));
    std::vector<Tensor> f = runOp("layerNorm", {x, w, b}, {});
    // One column: dx is exactly 0; what each device computes is rounding times rstd = 1/sqrt(eps) = 1000,
    // so the floor is 1000 times the usual one.
    CHECK(compare("layerNormBackward", {x, w, f[1], f[2], dy}, {}, 1e-5, std::nullopt, {}, cols == 1 ? 10.0 : 0.01));
    // With the gradient that passes around the norm added to dx.
    CHECK(compare("layerNormBackward", {x, w, f[1], f[2], dy, rand({2, 17, cols})}, {}, 1e-5, std::nullopt, {}, cols == 1 ? 10.0 : 0.01));
  }
}

TEST(cuda_bfloat16_and_float16) {
  for (DType t : {DType::BFloat16, DType::Float16}) {
    Tensor x = rand({3, 50, 96}), w = rand({40, 96}), b = rand({40});
    CHECK(compare("add", {x, rand({96})}, {}, 2e-2, t));
    CHECK(compare("gelu", {x}, {}, 2e-2, t));
    CHECK(compare("softmax", {x}, {}, 2e-2, t));
    CHECK(compare("linear", {x, w, b}, attrs({{"gelu", 1}}), 2e-2, t));
    CHECK(compare("matmul", {x, w}, attrs({{"transB", 1}}), 2e-2, t));
    Tensor q = rand({2, 3, 77, 64}), k = rand({2, 3, 77, 64}), v = rand({2, 3, 77, 64});
    CHECK(compare("attentionSoftmax", {q, k, v}, {}, 2e-2, t));
  }
}

// ---- GEMMs ----

// The rounding of a float32 to `dtype` and back, on the CPU (through the device's cast).
Tensor roundedTo(const Tensor& t, DType dtype) {
  return runOp("cast", onDevice({t}, Device::Cuda, dtype), attrs({{"dtype", 0}}))[0].to(Device::Cpu);
}

// 16-bit weight storage: float32 x, bias and residual with a 16-bit weight. The GEMM rounds x to
// the weight's type and accumulates in float32, so the CPU's float32 linear over the same rounded
// x and weight is the exact reference (float32 tolerance, not a 16-bit one).
TEST(cuda_linear_stored_weight) {
  for (DType t : {DType::BFloat16, DType::Float16}) {
    Tensor x = rand({2, 17, 33}), w = rand({7, 33}), bias = rand({7}), residual = rand({2, 17, 7});
    Tensor w16 = onDevice({w}, Device::Cuda, t)[0].value();
    Attrs gelu = attrs({{"gelu", 1}});
    Tensor gpu = runOp("linear", {x.to(Device::Cuda), w16, bias.to(Device::Cuda), residual.to(Device::Cuda)}, gelu)[0];
    CHECK(gpu.dtype() == DType::Float32);
    Tensor cpu = runOp("linear", {roundedTo(x, t), roundedTo(w, t), bias, residual}, gelu)[0];
    double e = relativeError(cpu, gpu);
    if (!(e <= 1e-5)) std::fprintf(stderr, "  linear with a %s weight: relative error %g > 1e-5\n", dtypeName(t), e);
    CHECK(e <= 1e-5);
  }
}

TEST(cuda_linear) {
  Tensor a = rand({2, 3, 17, 33}), b = rand({2, 3, 33, 5}), shared = rand({33, 5});
  CHECK(compare("matmul", {a, b}, {}));
  CHECK(compare("matmul", {a, shared}, attrs({{"alpha", 0.5}})));
  CHECK(compare("matmul", {rand({2, 33, 17}), rand({2, 5, 33})}, attrs({{"transA", 1}, {"transB", 1}})));
  Tensor x = rand({2, 17, 33}), w = rand({7, 33}), bias = rand({7}), residual = rand({2, 17, 7}), dy = rand({2, 17, 7});
  CHECK(compare("linear", {x, w}, {}));
  CHECK(compare("linear", {x, w, bias, residual}, attrs({{"gelu", 1}})));
  CHECK(compare("linearBackward", {x, w, dy}, {}));
  CHECK(compare("linearBackward", {x, w, dy}, attrs({{"inputGrad", 0}, {"bias", 0}})));
}

// ---- ViT layout ----

TEST(cuda_vit_layout) {
  Tensor images = rand({2, 3, 28, 21}), weight = rand({16, 3, 7, 7}), bias = rand({16});
  CHECK(compare("patchEmbed", {images, weight, bias}, {}));
  CHECK(compare("patchEmbedBackward", {images, weight, rand({2, 12, 16})}, {}));
  Tensor patches = rand({2, 16, 8}), cls = rand({1, 1, 8}), pos = rand({1, 17, 8});
  CHECK(compare("assembleTokens", {patches, cls, pos}, {}));
  CHECK(compare("assembleTokensBackward", {rand({2, 17, 8})}, {}));
  Tensor qkv = rand({2, 17, 30});
  CHECK(compare("splitHeads", {qkv}, attrs({{"heads", 2}, {"parts", 3}})));
  CHECK(compare("mergeHeads", {rand({2, 2, 17, 5}), rand({2, 2, 17, 5}), rand({2, 2, 17, 5})}, {}));
  CHECK(compare("mergeHeads", {rand({2, 2, 17, 5})}, {}));
  CHECK(compare("selectToken", {qkv}, attrs({{"index", 3}})));
  CHECK(compare("selectTokenBackward", {rand({2, 30})}, attrs({{"tokens", 17}, {"index", 0}})));
}

// ---- training ops ----

TEST(cuda_train) {
  Tensor logits = rand({7, 10}, 3.0f);
  std::vector<float> labels(7);
  for (int i = 0; i < 7; ++i) labels[std::size_t(i)] = float((i * 3) % 10);
  Tensor lab = tensorOf({7}, labels);
  CHECK(compare("crossEntropy", {logits, lab}, attrs({{"labelSmoothing", 0.1}})));
  labels[4] = 11.0f;
  Tensor bad = tensorOf({7}, labels);
  std::string cpuMessage;
  try { runOp("crossEntropy", {logits, bad}, {}); } catch (const Error& e) { cpuMessage = e.what(); }
  CHECK(failsWith([&] { runOp("crossEntropy", onDevice({logits, bad}, Device::Cuda), {}); }, cpuMessage));
  CHECK(compare("sumSquares", {rand({100003}), tensorOf({1}, {0.5f})}, {}));
  CHECK(compare("distillation", {rand({5, 10}, 2.0f), rand({5, 10}, 2.0f)}, attrs({{"temperature", 2.0}, {"weight", 0.5}})));
  CHECK(compare("scaleBatch", {rand({3, 17, 8}), tensorOf({3}, {0.0f, 1.25f, 1.25f})}, {}));
  // AdamW updates in place: run each device on its own copies, compare the results.
  for (bool withSchedule : {false, true}) {
    Tensor p = rand({1153}), g = rand({1153}), m = rand({1153}, 0.1f), v = tensorOf({1153}, std::vector<float>(1153, 0.01f));
    Tensor schedule = tensorOf({2}, {3e-3f, 7.0f}), norm2 = tensorOf({1}, {400.0f});
    Attrs a = attrs({{"lr", 1e-3}, {"step", 3}, {"weightDecay", 0.05}, {"maxGradNorm", 1.0}});
    // fresh host copies for the cpu run (the gpu run gets its own device copies)
    Tensor pc = tensorOf(p.shape(), valuesOf(p)), mc = tensorOf(m.shape(), valuesOf(m)), vc = tensorOf(v.shape(), valuesOf(v));
    Inputs gpuIn = onDevice({p, g, m, v, withSchedule ? std::optional<Tensor>(schedule) : std::nullopt, norm2}, Device::Cuda);
    runOp("adamw", {pc, g, mc, vc, withSchedule ? std::optional<Tensor>(schedule) : std::nullopt, norm2}, a);
    runOp("adamw", gpuIn, a);
    CHECK(relativeError(pc, *gpuIn[0]) <= 1e-5);
    CHECK(relativeError(mc, *gpuIn[2]) <= 1e-5);
    CHECK(relativeError(vc, *gpuIn[3]) <= 1e-5);
  }
}

// ---- attention ----

struct Dims {
  std::int64_t B, H, N, d;
  Shape full() const { return {B, H, N, d}; }
};

const std::vector<Dims> kShapes = {{1, 1, 1, 16}, {2, 3, 17, 32}, {1, 2, 197, 64}, {1, 1, 100, 5}, {2, 1, 257, 128}, {1, 3, 50, 24}};

TEST(cuda_attention_softmax) {
  for (const Dims& s : kShapes) {
    Tensor q = rand(s.full()), k = rand(s.full()), v = rand(s.full()), dy = rand(s.full());
    CHECK(compare("attentionSoftmax", {q, k, v}, {}));
    std::vector<Tensor> f = runOp("attentionSoftmax", {q, k, v}, {});
    // One token: dq and dk are exactly 0 (ds = p (dy.v - dy.y) with y = v), so each device returns
    // the rounding residue of dy.v - dy.y, whose terms are of order 1 here; they are measured against
    // that order, not against the 0.01 floor (a residue of 1.1e-7 read 1.1e-5 there).
    CHECK(compare("attentionSoftmaxBackward", {q, k, v, f[0], f[1], dy}, {}, 1e-5, std::nullopt, {}, s.N == 1 ? 1.0 : 0.01));
  }
}

// The auxiliary branch keeps the entries of softmax(q k^T / sqrt(d)) above tau. An entry within
// rounding of tau is kept on one device and dropped on the other: a jump in the output that no
// tolerance should absorb, and a coin flip rather than a fault (tau = 1/N sits among the entries).
// The tau used is the middle of the widest gap between entries within 20% of `wanted`: at least
// 5e-5 of tau from every entry in 43 random runs, against float32 errors near 1e-6. (Stepping from
// `wanted` until no entry lay within 1e-4 of tau gave up where entries are dense, 2 x 197^2 of
// them near 1/197, and then used a tau 2e-7 from an entry: about one run in fifteen failed.)
double tauClearOfEntries(const Tensor& q, const Tensor& k, double wanted) {
  const std::int64_t B = q.dim(0), H = q.dim(1), N = q.dim(2), d = q.dim(3);
  const float* qd = q.data();
  const float* kd = k.data();
  std::vector<double> entries;
  std::vector<double> row(static_cast<std::size_t>(N));
  for (std::int64_t h = 0; h < B * H; ++h) {
    for (std::int64_t i = 0; i < N; ++i) {
      double top = -INFINITY, sum = 0;
      for (std::int64_t j = 0; j < N; ++j) {
        double dot = 0;
        for (std::int64_t c = 0; c < d; ++c) dot += double(qd[(h * N + i) * d + c]) * kd[(h * N + j) * d + c];
        row[std::size_t(j)] = dot / std::sqrt(double(d));
        top = std::max(top, row[std::size_t(j)]);
      }
      for (double& x : row) sum += (x = std::exp(x - top));
      for (double x : row) entries.push_back(x / sum);
    }
  }
  entries.push_back(wanted / 1.2);  // the window's ends bound the gaps at its edges
  entries.push_back(wanted * 1.2);
  std::sort(entries.begin(), entries.end());
  auto first = std::lower_bound(entries.begin(), entries.end(), wanted / 1.2);
  auto last = std::upper_bound(entries.begin(), entries.end(), wanted * 1.2);
  double tau = wanted, widest = 0;
  for (auto it = first; it + 1 < last; ++it) {
    double gap = (*(it + 1) - *it) / (*(it + 1) + *it);  // relative to the middle, halved
    if (gap > widest) widest = gap, tau = 0.5 * (*(it + 1) + *it);
  }
  return tau;
}

TEST(cuda_attention_linear_angular) {
  struct Case { Dims s; int form; std::int64_t K; bool aux; };
  const std::vector<Case> cases = {
      {{1, 1, 1, 16}, 0, 3, false}, {{2, 3, 17, 32}, 0, 9, false}, {{1, 2, 197, 64}, 0, 9, true}, {{1, 1, 100, 5}, 0, 5, true},
      {{2, 3, 17, 32}, 1, 3, false}, {{1, 2, 50, 64}, 1, 3, true}, {{1, 1, 257, 128}, 0, 9, false}, {{2, 1, 65, 24}, 1, 5, true},
  };
  for (const Case& c : cases) {
    const Dims& s = c.s;
    Tensor q = rand(s.full()), k = rand(s.full()), v = rand(s.full()), dy = rand(s.full());
    Tensor w = c.form == 0 ? rand({s.H, c.K}) : rand({s.H, c.K, c.K});
    // tau about 0.005: on these shapes many, not all, entries of the auxiliary softmax pass
    const double tau = c.aux ? tauClearOfEntries(q, k, 0.005) : 0.005;
    Attrs a = attrs({{"form", double(c.form)}, {"aux", c.aux ? 1.0 : 0.0}, {"tau", tau}, {"l1", 0.1}});
    CHECK(compare("attentionLinearAngular", {q, k, v, w}, a));
    std::vector<Tensor> f = runOp("attentionLinearAngular", {q, k, v, w}, a);
    Inputs back = {q, k, v, w, f[1], f[2], f[3], f[4]};
    if (c.aux) {
      back.push_back(f[5]);
      back.push_back(f[6]);
      back.push_back(f[7]);
    } else {
      back.insert(back.end(), 3, std::nullopt);
    }
    back.push_back(dy);
    CHECK(compare("attentionLinearAngularBackward", back, a));
  }
}

// ---- Sparsifiner ----

struct PredictorSetup {
  Tensor q, k, wq, bq, wk, bk, p, bb;
  Inputs inputs() const { return {q, k, wq, bq, wk, bk, p, bb}; }
};

PredictorSetup predictor(const Dims& s) {
  std::int64_t half = s.d / 2, r = std::max<std::int64_t>(1, s.N / 8);
  return {rand(s.full()), rand(s.full()), rand({half, s.d}, 0.3f), rand({half}, 0.1f), rand({half, s.d}, 0.3f), rand({half}, 0.1f),
          rand({s.N, r}), rand({s.N, r})};
}

TEST(cuda_sparsifiner) {
  for (const Dims& s : std::vector<Dims>{{1, 2, 17, 16}, {2, 3, 197, 64}, {1, 1, 50, 24}}) {
    PredictorSetup x = predictor(s);
    Attrs a = attrs({{"keepRate", 0.25}});
    // C, qp and Kp to 3e-5 of the largest value (C sums two chains of float32 products, Kp's over
    // ~200 tokens: the devices' summation orders differed by up to 1.03e-5 in 43 random runs);
    // the indices exactly, except where approx has near-ties (a handful).
    CHECK(compare("sparsifinerPredict", x.inputs(), a, 3e-5, std::nullopt, {1, 2, 3}));
    std::vector<Tensor> cpu = runOp("sparsifinerPredict", x.inputs(), a);
    std::vector<Tensor> gpu = runOp("sparsifinerPredict", onDevice(x.inputs(), Device::Cuda), a);
    Tensor gi = gpu[0].to(Device::Cpu);
    std::int64_t differ = 0;
    for (std::int64_t i = 0; i < cpu[0].numel(); ++i) differ += cpu[0].data()[i] != gi.data()[i];
    if (differ * 1000 > cpu[0].numel()) std::fprintf(stderr, "  sparsifinerPredict: %lld of %lld indices differ\n", (long long)differ, (long long)cpu[0].numel());
    CHECK(differ * 1000 <= cpu[0].numel());
    Attrs t = attrs({{"mode", 1}, {"threshold", 0.0}});
    CHECK(compare("sparsifinerPredict", x.inputs(), t, 3e-5, std::nullopt, {1, 2, 3}));
    // Sparse attention on the CPU's indices.
    Tensor v = rand(s.full()), dy = rand(s.full());
    CHECK(compare("sparseAttention", {x.q, x.k, v, cpu[0]}, {}));
    std::vector<Tensor> f = runOp("sparseAttention", {x.q, x.k, v, cpu[0]}, {});
    CHECK(compare("sparseAttentionBackward", {x.q, x.k, v, cpu[0], f[0], f[1], dy}, {}));
    // Reconstruction against the dense attention's lse.
    std::vector<Tensor> dense = runOp("attentionSoftmax", {x.q, x.k, v}, {});
    Inputs rin = x.inputs();
    rin.push_back(dense[1]);
    // The parameter gradients sum ~1200 rows of a chain of float32 GEMMs and a softmax backward:
    // the CPU's own scalar and AVX-512 kernels already differ by up to 1e-5 of the largest value.
    // The bias gradients dbq, dbk (outputs 2, 4) are column sums of dqp, dkp that can cancel to a
    // small share of their terms (dbk 0.066 where dWk reached 13.4, with the same absolute error of
    // 4-5e-6), so each is measured against its weight gradient's largest value (the same rows
    // weighted by q or k in [-1, 1]: a lower bound on the terms' scale).
    std::vector<Tensor> rc = runOp("sparsifinerReconstruction", rin, {});
    std::vector<Tensor> rg = runOp("sparsifinerReconstruction", onDevice(rin, Device::Cuda), {});
    CHECK(agree("sparsifinerReconstruction", rc, rg, 5e-5, {}, [&](std::size_t o) {
      return o == 2 || o == 4 ? std::max(0.01, largestMagnitude(rc[o - 1])) : 0.01;
    }));
  }
}

TEST(cuda_sparse_attention_bad_indices) {
  Dims s{1, 1, 9, 8};
  Tensor q = rand(s.full()), k = rand(s.full()), v = rand(s.full());
  std::vector<float> idx(9 * 3, -1.0f);
  for (int row = 1; row < 9; ++row) idx[std::size_t(row * 3)] = float(row - 1);
  idx[5 * 3 + 1] = 2.0f;  // row 5: 4 then 2, not increasing
  Tensor indices = tensorOf({1, 1, 9, 3}, idx);
  std::string cpuMessage;
  try { runOp("sparseAttention", {q, k, v, indices}, {}); } catch (const Error& e) { cpuMessage = e.what(); }
  CHECK(!cpuMessage.empty());
  CHECK(failsWith([&] { runOp("sparseAttention", onDevice({q, k, v, indices}, Device::Cuda), {}); }, cpuMessage));
}

// ---- memory ----

TEST(cuda_allocator_reuses_blocks) {
  cuda::CachingAllocator& alloc = cuda::allocator();
  { Tensor t = Tensor::empty({1 << 20}, DType::Float32, Device::Cuda); }
  cuda::AllocatorStats before = alloc.stats();
  { Tensor t = Tensor::empty({1 << 20}, DType::Float32, Device::Cuda); }
  cuda::AllocatorStats after = alloc.stats();
  CHECK(after.mallocs == before.mallocs);
  CHECK(after.reuses == before.reuses + 1);
  alloc.trim();
  CHECK(alloc.stats().cachedBytes == 0);
  CHECK(failsWith([] { Tensor::empty({1}, DType::BFloat16, Device::Cpu); }, "holds float32"));
}

}  // namespace

int main() {
  cpu::registerCpuOps(OpRegistry::global());
  const cuda::Status& status = cuda::initialize(OpRegistry::global());
  if (!status.available) {
    std::printf("CUDA not available: %s\nskipping every CUDA test\ntests: 0 passed, 0 failed\n", status.reason.c_str());
    return 0;
  }
  std::printf("device: %s (sm_%d, %d SMs), CUDA runtime %d, driver %d\n", status.device.c_str(), status.computeCapability,
              status.multiprocessors, status.runtimeVersion, status.driverVersion);
  // The CPU side runs on its best ISA only: the ISAs themselves are checked by the other tests.
  // Each case waits for the device, so that an asynchronous error fails the case that caused it.
  Tally tally;
  runCases(tally, nullptr, [] { cuda::synchronize(); });
  return finish(tally);
}
