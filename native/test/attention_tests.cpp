// C++ tests of the attention ops (attention_softmax.cpp, attention_linear_angular.cpp) against
// float64 references written out here from docs/algorithms.md sections 1-3; the references' own
// gradients are checked against finite differences of their forward. Every case runs on every
// ISA the CPU supports (test_util.h).
#include <algorithm>
#include <cstring>
#include <optional>

#include "../core/error.h"
#include "../core/op_registry.h"
#include "../core/storage.h"
#include "../core/thread_pool.h"
#include "../cpu/cpu_ops.h"
#include "op_helpers.h"
#include "test_util.h"

using namespace castling;
using namespace castling::test;

namespace {

bool allFinite(const std::vector<Tensor>& ts) {
  for (const Tensor& t : ts)
    for (std::int64_t i = 0; i < t.numel(); ++i)
      if (!std::isfinite(t.data()[i])) return false;
  return true;
}

struct Dims {
  std::int64_t B, H, N, d;
  std::int64_t heads() const { return B * H; }
  std::int64_t size() const { return B * H * N * d; }
  Shape full() const { return {B, H, N, d}; }
  std::string str() const {
    return "B=" + std::to_string(B) + " H=" + std::to_string(H) + " N=" + std::to_string(N) + " d=" + std::to_string(d);
  }
};

// Covers every N in {1, 2, 17, 197, 257}, d in {16, 32, 64} (and widths that are not a multiple
// of any vector), H in {1, 3}, B in {1, 2}; and token counts past the flash forward's span of
// keys (288): 300 (a second span of 12 keys, values copied into padded rows) and 577 (24 x 24
// patches and a class token: two whole spans and one key, values read in place).
const std::vector<Dims> kShapes = {
    {1, 1, 1, 16}, {2, 3, 2, 32}, {1, 3, 17, 64}, {2, 1, 17, 16}, {2, 1, 197, 16},
    {1, 3, 197, 64}, {2, 3, 257, 32}, {1, 1, 257, 64}, {1, 2, 50, 24}, {1, 1, 100, 5},
    {1, 2, 300, 24}, {1, 1, 577, 64},
};

// ---- float64 reference: softmax attention (section 1) ----

struct SoftmaxRef {
  Vec y, lse;
};

SoftmaxRef softmaxForward(const Dims& s, const Vec& q, const Vec& k, const Vec& v, double scale) {
  SoftmaxRef r{Vec(std::size_t(s.size())), Vec(std::size_t(s.heads() * s.N))};
  const std::int64_t N = s.N, d = s.d;
  Vec p(static_cast<std::size_t>(N));
  for (std::int64_t h = 0; h < s.heads(); ++h) {
    const double *qh = &q[h * N * d], *kh = &k[h * N * d], *vh = &v[h * N * d];
    for (std::int64_t i = 0; i < N; ++i) {
      double mx = -1e300;
      for (std::int64_t j = 0; j < N; ++j) {
        double dot = 0;
        for (std::int64_t c = 0; c < d; ++c) dot += qh[i * d + c] * kh[j * d + c];
        p[j] = scale * dot;
        mx = std::max(mx, p[j]);
      }
      double sum = 0;
      for (std::int64_t j = 0; j < N; ++j) sum += (p[j] = std::exp(p[j] - mx));
      r.lse[h * N + i] = mx + std::log(sum);
      for (std::int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (std::int64_t j = 0; j < N; ++j) acc += p[j] * vh[j * d + c];
        r.y[(h * N + i) * d + c] = acc / sum;
      }
    }
  }
  return r;
}

struct Grads {
  Vec dq, dk, dv, dw;
};

Grads softmaxBackward(const Dims& s, const Vec& q, const Vec& k, const Vec& v, const Vec& dy, double scale) {
  const std::int64_t N = s.N, d = s.d;
  Grads g{Vec(std::size_t(s.size())), Vec(std::size_t(s.size())), Vec(std::size_t(s.size())), {}};
  Vec P(std::size_t(N * N)), dP(std::size_t(N * N));
  for (std::int64_t h = 0; h < s.heads(); ++h) {
    std::int64_t o = h * N * d;
    for (std::int64_t i = 0; i < N; ++i) {
      double mx = -1e300;
      for (std::int64_t j = 0; j < N; ++j) {
        double dot = 0, dd = 0;
        for (std::int64_t c = 0; c < d; ++c) {
          dot += q[o + i * d + c] * k[o + j * d + c];
          dd += dy[o + i * d + c] * v[o + j * d + c];
        }
        P[i * N + j] = scale * dot;
        dP[i * N + j] = dd;
        mx = std::max(mx, P[i * N + j]);
      }
      double sum = 0;
      for (std::int64_t j = 0; j < N; ++j) sum += (P[i * N + j] = std::exp(P[i * N + j] - mx));
      double row = 0;
      for (std::int64_t j = 0; j < N; ++j) row += (P[i * N + j] /= sum) * dP[i * N + j];
      for (std::int64_t j = 0; j < N; ++j) {
        double ds = P[i * N + j] * (dP[i * N + j] - row);
        for (std::int64_t c = 0; c < d; ++c) {
          g.dq[o + i * d + c] += scale * ds * k[o + j * d + c];
          g.dk[o + j * d + c] += scale * ds * q[o + i * d + c];
          g.dv[o + j * d + c] += P[i * N + j] * dy[o + i * d + c];
        }
      }
    }
  }
  return g;
}

// ---- float64 reference: linear-angular attention (sections 2 and 3) ----

struct AngularSetup {
  int form = 0;          // 0 tokens, 1 spatial
  std::int64_t K = 3;    // taps per side
  bool aux = false;
  double tau = 0.02, auxScale = 0.25, lambda = 0.0;
};

std::int64_t weightsPerHead(const AngularSetup& a) { return a.form == 0 ? a.K : a.K * a.K; }
Shape weightShape(const Dims& s, const AngularSetup& a) {
  return a.form == 0 ? Shape{s.H, a.K} : Shape{s.H, a.K, a.K};
}

// Calls fn(weight index, neighbour) for each tap of token n (the forward direction).
template <typename Fn>
void forEachTap(const AngularSetup& a, std::int64_t N, std::int64_t n, Fn&& fn) {
  std::int64_t c = a.K / 2;
  if (a.form == 0) {
    for (std::int64_t t = 0; t < a.K; ++t)
      if (n + t - c >= 0 && n + t - c < N) fn(t, n + t - c);
    return;
  }
  if (n == 0) return;
  std::int64_t side = std::llround(std::sqrt(double(N - 1))), row = (n - 1) / side, col = (n - 1) % side;
  for (std::int64_t x = 0; x < a.K; ++x)
    for (std::int64_t y = 0; y < a.K; ++y) {
      std::int64_t r = row + x - c, cc = col + y - c;
      if (r >= 0 && r < side && cc >= 0 && cc < side) fn(x * a.K + y, 1 + r * side + cc);
    }
}

struct AngularRef {
  Vec y, u, z, zn, qn, kn, qh, kh, S, A, M, o, lse, mass;
  double l1 = 0;
};

// The forward; `fixedMask` (per head N x N) replaces A > tau when given (finite differences).
AngularRef angularForward(const Dims& s, const AngularSetup& a, const Vec& q, const Vec& k, const Vec& v,
                          const Vec& w, const Vec* fixedMask = nullptr) {
  const std::int64_t N = s.N, d = s.d, nh = s.heads();
  AngularRef r;
  r.y = r.u = r.z = r.qh = r.kh = r.o = Vec(std::size_t(s.size()));
  r.zn = r.qn = r.kn = Vec(std::size_t(nh * N));
  r.S = Vec(std::size_t(nh * d * d));
  if (a.aux) r.A = r.M = Vec(std::size_t(nh * N * N));
  r.lse = r.mass = Vec(std::size_t(nh * N));
  for (std::int64_t h = 0; h < nh; ++h) {
    std::int64_t o = h * N * d;
    for (std::int64_t n = 0; n < N; ++n) {
      double qq = 0, kk = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        qq += q[o + n * d + c] * q[o + n * d + c];
        kk += k[o + n * d + c] * k[o + n * d + c];
      }
      r.qn[h * N + n] = std::max(std::sqrt(qq), 1e-12);
      r.kn[h * N + n] = std::max(std::sqrt(kk), 1e-12);
      for (std::int64_t c = 0; c < d; ++c) {
        r.qh[o + n * d + c] = q[o + n * d + c] / r.qn[h * N + n];
        r.kh[o + n * d + c] = k[o + n * d + c] / r.kn[h * N + n];
      }
    }
    double* S = &r.S[h * d * d];
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t i = 0; i < d; ++i)
        for (std::int64_t j = 0; j < d; ++j) S[i * d + j] += r.kh[o + n * d + i] * v[o + n * d + j];
    if (a.aux) {
      for (std::int64_t n = 0; n < N; ++n) {
        double* An = &r.A[(h * N + n) * N];
        double mx = -1e300, sum = 0;
        for (std::int64_t m = 0; m < N; ++m) {
          double dot = 0;
          for (std::int64_t c = 0; c < d; ++c) dot += q[o + n * d + c] * k[o + m * d + c];
          An[m] = a.auxScale * dot;
          mx = std::max(mx, An[m]);
        }
        for (std::int64_t m = 0; m < N; ++m) sum += (An[m] = std::exp(An[m] - mx));
        r.lse[h * N + n] = mx + std::log(sum);
        for (std::int64_t m = 0; m < N; ++m) {
          An[m] /= sum;
          double M = fixedMask ? (*fixedMask)[(h * N + n) * N + m] : (An[m] > a.tau ? 1.0 : 0.0);
          r.M[(h * N + n) * N + m] = M;
          r.l1 += M * An[m];
          r.mass[h * N + n] += M * An[m];
          for (std::int64_t c = 0; c < d; ++c) r.o[o + n * d + c] += M * An[m] * v[o + m * d + c];
        }
      }
    }
    const double* wh = &w[(h % s.H) * weightsPerHead(a)];
    for (std::int64_t n = 0; n < N; ++n) {
      double zz = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        double acc = 0;
        for (std::int64_t i = 0; i < d; ++i) acc += r.qh[o + n * d + i] * S[i * d + c];
        double z = 0.5 * v[o + n * d + c] + acc / M_PI + r.o[o + n * d + c];
        r.z[o + n * d + c] = z;
        zz += z * z;
      }
      double zn = r.zn[h * N + n] = std::max(std::sqrt(zz), 1e-12);
      for (std::int64_t c = 0; c < d; ++c) r.y[o + n * d + c] = r.u[o + n * d + c] = r.z[o + n * d + c] / zn;
      forEachTap(a, N, n, [&](std::int64_t t, std::int64_t m) {
        for (std::int64_t c = 0; c < d; ++c) r.y[o + n * d + c] += wh[t] * v[o + m * d + c];
      });
    }
  }
  return r;
}

// The analytic gradient of L = sum(dy . y) + lambda * sum(M . A) (M constant).
Grads angularBackward(const Dims& s, const AngularSetup& a, const Vec& q, const Vec& k, const Vec& v,
                      const Vec& w, const Vec& dy, const AngularRef& f) {
  const std::int64_t N = s.N, d = s.d, nh = s.heads(), nw = weightsPerHead(a);
  Grads g{Vec(std::size_t(s.size())), Vec(std::size_t(s.size())), Vec(std::size_t(s.size())),
          Vec(std::size_t(s.H * nw))};
  Vec dz(std::size_t(s.size())), dqh(std::size_t(s.size())), dkh(std::size_t(s.size()));
  for (std::int64_t h = 0; h < nh; ++h) {
    std::int64_t o = h * N * d;
    const double* wh = &w[(h % s.H) * nw];
    double* dwh = &g.dw[(h % s.H) * nw];
    for (std::int64_t n = 0; n < N; ++n) {
      forEachTap(a, N, n, [&](std::int64_t t, std::int64_t m) {
        for (std::int64_t c = 0; c < d; ++c) {
          dwh[t] += dy[o + n * d + c] * v[o + m * d + c];
          g.dv[o + m * d + c] += wh[t] * dy[o + n * d + c];
        }
      });
      double ug = 0;
      for (std::int64_t c = 0; c < d; ++c) ug += f.u[o + n * d + c] * dy[o + n * d + c];
      for (std::int64_t c = 0; c < d; ++c)
        dz[o + n * d + c] = (dy[o + n * d + c] - f.u[o + n * d + c] * ug) / f.zn[h * N + n];
    }
    const double* S = &f.S[h * d * d];
    Vec dS(static_cast<std::size_t>(d * d));
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t i = 0; i < d; ++i) {
        double acc = 0;
        for (std::int64_t c = 0; c < d; ++c) {
          acc += dz[o + n * d + c] * S[i * d + c];
          dS[i * d + c] += f.qh[o + n * d + i] * dz[o + n * d + c] / M_PI;
        }
        dqh[o + n * d + i] = acc / M_PI;
        g.dv[o + n * d + i] += 0.5 * dz[o + n * d + i];
      }
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t i = 0; i < d; ++i) {
        double acc = 0, accv = 0;
        for (std::int64_t c = 0; c < d; ++c) {
          acc += v[o + n * d + c] * dS[i * d + c];
          accv += f.kh[o + n * d + c] * dS[c * d + i];
        }
        dkh[o + n * d + i] = acc;
        g.dv[o + n * d + i] += accv;
      }
    for (std::int64_t n = 0; n < N; ++n) {
      double pq = 0, pk = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        pq += f.qh[o + n * d + c] * dqh[o + n * d + c];
        pk += f.kh[o + n * d + c] * dkh[o + n * d + c];
      }
      for (std::int64_t c = 0; c < d; ++c) {
        g.dq[o + n * d + c] = (dqh[o + n * d + c] - f.qh[o + n * d + c] * pq) / f.qn[h * N + n];
        g.dk[o + n * d + c] = (dkh[o + n * d + c] - f.kh[o + n * d + c] * pk) / f.kn[h * N + n];
      }
    }
    if (!a.aux) continue;
    for (std::int64_t n = 0; n < N; ++n) {
      const double* An = &f.A[(h * N + n) * N];
      const double* Mn = &f.M[(h * N + n) * N];
      Vec dA(static_cast<std::size_t>(N));
      double row = 0;
      for (std::int64_t m = 0; m < N; ++m) {
        double dot = 0;
        for (std::int64_t c = 0; c < d; ++c) dot += dz[o + n * d + c] * v[o + m * d + c];
        dA[m] = Mn[m] * (dot + a.lambda);
        row += An[m] * dA[m];
      }
      for (std::int64_t m = 0; m < N; ++m) {
        double ds = An[m] * (dA[m] - row);
        for (std::int64_t c = 0; c < d; ++c) {
          g.dq[o + n * d + c] += a.auxScale * ds * k[o + m * d + c];
          g.dk[o + m * d + c] += a.auxScale * ds * q[o + n * d + c];
          g.dv[o + m * d + c] += Mn[m] * An[m] * dz[o + n * d + c];
        }
      }
    }
  }
  return g;
}

// A threshold near `target` in the middle of a wide gap between the reference's A values, so
// that float rounding cannot flip a mask entry between the kernel and the reference.
double safeTau(const Dims& s, const AngularSetup& a, const Vec& q, const Vec& k, const Vec& v, const Vec& w,
               double target) {
  AngularSetup probe = a;
  probe.aux = true;
  probe.tau = 2.0;
  AngularRef f = angularForward(s, probe, q, k, v, w);
  Vec sorted = f.A;
  std::sort(sorted.begin(), sorted.end());
  auto at = std::lower_bound(sorted.begin(), sorted.end(), target) - sorted.begin();
  double best = target, gap = -1;
  for (std::int64_t i = std::max<std::int64_t>(1, at - 20); i < std::min<std::int64_t>(std::int64_t(sorted.size()), at + 20); ++i) {
    if (sorted[i] - sorted[i - 1] > gap) {
      gap = sorted[i] - sorted[i - 1];
      best = 0.5 * (sorted[i] + sorted[i - 1]);
    }
  }
  return best;
}

Attrs angularAttrs(const AngularSetup& a) {
  Attrs attrs;
  attrs.set("form", a.form);
  attrs.set("aux", a.aux ? 1 : 0);
  attrs.set("tau", a.tau);
  attrs.set("auxScale", a.auxScale);
  attrs.set("l1", a.lambda);
  return attrs;
}

struct AngularData {
  std::vector<float> q, k, v, w, dy;
};

AngularData angularData(const Dims& s, const AngularSetup& a, float qkScale) {
  return {randomVector(std::size_t(s.size()), qkScale), randomVector(std::size_t(s.size()), qkScale),
          randomVector(std::size_t(s.size())), randomVector(std::size_t(s.H * weightsPerHead(a)), 0.3f),
          randomVector(std::size_t(s.size()))};
}

std::vector<Tensor> runAngularForward(const Dims& s, const AngularSetup& a, const AngularData& x) {
  return runOp("attentionLinearAngular",
               {tensorOf(s.full(), x.q), tensorOf(s.full(), x.k), tensorOf(s.full(), x.v),
                tensorOf(weightShape(s, a), x.w)},
               angularAttrs(a));
}

// The backward's inputs: the forward's inputs, its saved outputs, dy.
std::vector<std::optional<Tensor>> angularBackwardInputs(const Dims& s, const AngularSetup& a, const AngularData& x,
                                                         const std::vector<Tensor>& fwd) {
  std::vector<std::optional<Tensor>> in = {tensorOf(s.full(), x.q), tensorOf(s.full(), x.k),
                                           tensorOf(s.full(), x.v), tensorOf(weightShape(s, a), x.w)};
  for (int i = 1; i <= 4; ++i) in.push_back(fwd[i]);  // qnorm, knorm, S, znorm
  for (int i = 5; i <= 7; ++i) in.push_back(a.aux ? std::optional<Tensor>(fwd[i]) : std::nullopt);
  in.push_back(tensorOf(s.full(), x.dy));
  return in;
}

std::vector<Tensor> runAngularBackward(const Dims& s, const AngularSetup& a, const AngularData& x,
                                       const std::vector<Tensor>& fwd) {
  return runOp("attentionLinearAngularBackward", angularBackwardInputs(s, a, x, fwd), angularAttrs(a));
}

// The (form, K, aux) variants run for each shape; spatial needs N - 1 to be a square.
std::vector<AngularSetup> angularSetups(const Dims& s) {
  std::vector<AngularSetup> out;
  out.push_back({0, 3, false});
  out.push_back({0, 9, true});
  std::int64_t side = std::llround(std::sqrt(double(s.N - 1)));
  if (s.N >= 2 && side * side == s.N - 1) {
    out.push_back({1, 3, false});
    out.push_back({1, 5, true});
  }
  return out;
}

}  // namespace

// ---- softmax attention ----

TEST(softmax_forward_matches_float64_reference) {
  for (const Dims& s : kShapes) {
    auto q = randomVector(std::size_t(s.size()), 2.0f), k = randomVector(std::size_t(s.size()), 2.0f),
         v = randomVector(std::size_t(s.size()));
    Attrs attrs;
    double scale = 1.0 / std::sqrt(double(s.d));
    auto out = runOp("attentionSoftmax", {tensorOf(s.full(), q), tensorOf(s.full(), k), tensorOf(s.full(), v)}, attrs);
    SoftmaxRef want = softmaxForward(s, toDouble(q), toDouble(k), toDouble(v), scale);
    CHECK(out.size() == 2);
    CHECK(out[0].shape() == s.full());
    CHECK((out[1].shape() == Shape{s.B, s.H, s.N}));
    CHECK(close(valuesOf(out[0]), want.y, 2e-5, "y", s.str()));
    CHECK(close(valuesOf(out[1]), want.lse, 2e-6, "lse", s.str(), kLseFloor));
  }
  // An explicit scale.
  Dims s{1, 2, 40, 16};
  auto q = randomVector(std::size_t(s.size())), k = randomVector(std::size_t(s.size())), v = randomVector(std::size_t(s.size()));
  Attrs attrs;
  attrs.set("scale", 0.7);
  auto out = runOp("attentionSoftmax", {tensorOf(s.full(), q), tensorOf(s.full(), k), tensorOf(s.full(), v)}, attrs);
  CHECK(close(valuesOf(out[0]), softmaxForward(s, toDouble(q), toDouble(k), toDouble(v), 0.7).y, 2e-5, "y scale 0.7", s.str()));
}

TEST(softmax_backward_matches_float64_reference) {
  for (const Dims& s : kShapes) {
    auto q = randomVector(std::size_t(s.size()), 2.0f), k = randomVector(std::size_t(s.size()), 2.0f),
         v = randomVector(std::size_t(s.size())), dy = randomVector(std::size_t(s.size()));
    Attrs attrs;
    double scale = 1.0 / std::sqrt(double(s.d));
    Tensor tq = tensorOf(s.full(), q), tk = tensorOf(s.full(), k), tv = tensorOf(s.full(), v);
    auto fwd = runOp("attentionSoftmax", {tq, tk, tv}, attrs);
    auto got = runOp("attentionSoftmaxBackward", {tq, tk, tv, fwd[0], fwd[1], tensorOf(s.full(), dy)}, attrs);
    Grads want = softmaxBackward(s, toDouble(q), toDouble(k), toDouble(v), toDouble(dy), scale);
    CHECK(got.size() == 3);
    CHECK(close(valuesOf(got[0]), want.dq, 1e-4, "dq", s.str()));
    CHECK(close(valuesOf(got[1]), want.dk, 1e-4, "dk", s.str()));
    CHECK(close(valuesOf(got[2]), want.dv, 1e-4, "dv", s.str()));
  }
}

// The reference's analytic gradient against central differences of the reference forward.
TEST(softmax_reference_gradient_matches_finite_differences) {
  Dims s{1, 2, 5, 3};
  Vec q = toDouble(randomVector(std::size_t(s.size()))), k = toDouble(randomVector(std::size_t(s.size()))),
      v = toDouble(randomVector(std::size_t(s.size()))), dy = toDouble(randomVector(std::size_t(s.size())));
  double scale = 0.8;
  Grads g = softmaxBackward(s, q, k, v, dy, scale);
  auto loss = [&] { return dot(softmaxForward(s, q, k, v, scale).y, dy); };
  double worst = worstFiniteDifference({{&q, &g.dq}, {&k, &g.dk}, {&v, &g.dv}}, loss);
  if (worst > 1e-7) std::fprintf(stderr, "  finite differences differ by %g\n", worst);
  CHECK(worst <= 1e-7);
}

// ---- linear-angular attention ----

TEST(linear_angular_forward_matches_float64_reference) {
  for (const Dims& s : kShapes) {
    for (AngularSetup a : angularSetups(s)) {
      AngularData x = angularData(s, a, a.aux ? 3.0f : 1.0f);
      a.auxScale = 1.0 / std::sqrt(double(s.d));
      if (a.aux) a.tau = safeTau(s, a, toDouble(x.q), toDouble(x.k), toDouble(x.v), toDouble(x.w), 0.02);
      auto out = runAngularForward(s, a, x);
      AngularRef want = angularForward(s, a, toDouble(x.q), toDouble(x.k), toDouble(x.v), toDouble(x.w));
      std::string where = s.str() + " form=" + std::to_string(a.form) + " K=" + std::to_string(a.K) +
                          " aux=" + std::to_string(a.aux);
      CHECK(out.size() == (a.aux ? 9u : 5u));
      CHECK(close(valuesOf(out[0]), want.y, 3e-5, "y", where));
      CHECK(close(valuesOf(out[1]), want.qn, 1e-5, "qnorm", where));
      CHECK(close(valuesOf(out[2]), want.kn, 1e-5, "knorm", where));
      CHECK(close(valuesOf(out[3]), want.S, 1e-5, "S", where));
      CHECK(close(valuesOf(out[4]), want.zn, 1e-5, "znorm", where));
      if (a.aux) {
        CHECK(close(valuesOf(out[5]), want.lse, 2e-6, "lse", where, kLseFloor));
        CHECK(close(valuesOf(out[6]), want.o, 3e-5, "auxOut", where));
        CHECK(close(valuesOf(out[7]), want.mass, 1e-5, "auxMass", where));
        CHECK(close(valuesOf(out[8]), Vec{want.l1}, 1e-5, "l1", where));
      }
    }
  }
}

TEST(linear_angular_backward_matches_float64_reference) {
  for (const Dims& s : kShapes) {
    for (AngularSetup a : angularSetups(s)) {
      AngularData x = angularData(s, a, a.aux ? 3.0f : 1.0f);
      a.auxScale = 1.0 / std::sqrt(double(s.d));
      a.lambda = a.aux ? 0.3 : 0.0;
      if (a.aux) a.tau = safeTau(s, a, toDouble(x.q), toDouble(x.k), toDouble(x.v), toDouble(x.w), 0.02);
      auto fwd = runAngularForward(s, a, x);
      auto got = runAngularBackward(s, a, x, fwd);
      Vec q = toDouble(x.q), k = toDouble(x.k), v = toDouble(x.v), w = toDouble(x.w);
      AngularRef f = angularForward(s, a, q, k, v, w);
      Grads want = angularBackward(s, a, q, k, v, w, toDouble(x.dy), f);
      std::string where = s.str() + " form=" + std::to_string(a.form) + " K=" + std::to_string(a.K) +
                          " aux=" + std::to_string(a.aux);
      CHECK(got.size() == 4);
      CHECK(close(valuesOf(got[0]), want.dq, 2e-4, "dq", where));
      CHECK(close(valuesOf(got[1]), want.dk, 2e-4, "dk", where));
      CHECK(close(valuesOf(got[2]), want.dv, 2e-4, "dv", where));
      CHECK(close(valuesOf(got[3]), want.dw, 2e-4, "dWeight", where));
      CHECK(got[3].shape() == weightShape(s, a));
    }
  }
}

// The two ways of cutting the work, forward and backward: with two heads per thread or more a
// job runs both passes over one whole head (in the forward a head streamed once, with the next
// block fetched during the current one's products; in the backward the query side, then the key
// side); with fewer, each head's tokens are cut into ranges (the backward's partial dS summed in
// between). Token counts one off the 96-token block and a long one (1031 = 10 blocks + 71), under
// one and three threads.
TEST(linear_angular_whole_heads_and_token_ranges_match_reference) {
  ThreadPool& pool = ThreadPool::global();
  const int before = pool.threads();
  for (int threads : {1, 3}) {
    pool.setThreads(threads);
    for (std::int64_t N : {1, 7, 95, 96, 97, 192, 197, 1031}) {
      for (Dims s : {Dims{1, 1, N, 64}, Dims{2, 3, N, 64}, Dims{1, 4, N, 24}}) {
        for (AngularSetup a : {AngularSetup{0, 9, false}, AngularSetup{0, 3, N <= 197}}) {
          AngularData x = angularData(s, a, a.aux ? 3.0f : 1.0f);
          a.auxScale = 1.0 / std::sqrt(double(s.d));
          a.lambda = a.aux ? 0.3 : 0.0;
          if (a.aux) a.tau = safeTau(s, a, toDouble(x.q), toDouble(x.k), toDouble(x.v), toDouble(x.w), 0.02);
          auto out = runAngularForward(s, a, x);
          Vec q = toDouble(x.q), k = toDouble(x.k), v = toDouble(x.v), w = toDouble(x.w);
          AngularRef want = angularForward(s, a, q, k, v, w);
          std::string where = s.str() + " threads=" + std::to_string(threads) + " K=" + std::to_string(a.K) +
                              " aux=" + std::to_string(a.aux);
          CHECK(close(valuesOf(out[0]), want.y, 3e-5, "y", where));
          CHECK(close(valuesOf(out[1]), want.qn, 1e-5, "qnorm", where));
          CHECK(close(valuesOf(out[2]), want.kn, 1e-5, "knorm", where));
          CHECK(close(valuesOf(out[3]), want.S, 1e-5, "S", where));
          CHECK(close(valuesOf(out[4]), want.zn, 1e-5, "znorm", where));
          auto got = runAngularBackward(s, a, x, out);
          Grads wantGrads = angularBackward(s, a, q, k, v, w, toDouble(x.dy), want);
          CHECK(close(valuesOf(got[0]), wantGrads.dq, 2e-4, "dq", where));
          CHECK(close(valuesOf(got[1]), wantGrads.dk, 2e-4, "dk", where));
          CHECK(close(valuesOf(got[2]), wantGrads.dv, 2e-4, "dv", where));
          CHECK(close(valuesOf(got[3]), wantGrads.dw, 2e-4, "dWeight", where));
        }
      }
    }
  }
  pool.setThreads(before);
}

// Without the auxiliary branch the backward keeps nothing the size of the tokens beyond the
// gradients it returns: the branch's incoming gradient dz (N x d floats a head) is kept only for
// the branch. Measured as the growth of the memory above the inputs and the gradients from N to
// 2N tokens (per-thread scratch and d x d sums do not grow), where a kept dz would add H N d floats.
TEST(linear_angular_backward_without_the_branch_keeps_no_token_sized_buffer) {
  const AngularSetup a{0, 9, false};
  auto extraMemory = [&](std::int64_t N) {
    const Dims s{1, 3, N, 64};
    AngularData x = angularData(s, a, 1.0f);
    auto in = angularBackwardInputs(s, a, x, runAngularForward(s, a, x));  // made before the measurement
    Storage::resetPeak();
    const std::int64_t before = Storage::liveBytes();
    auto grads = runOp("attentionLinearAngularBackward", std::move(in), angularAttrs(a));
    std::int64_t returned = 0;
    for (const Tensor& g : grads) returned += g.numel() * std::int64_t(sizeof(float));
    return Storage::peakBytes() - before - returned;
  };
  const std::int64_t N = 2000, atN = extraMemory(N), at2N = extraMemory(2 * N);
  const std::int64_t tokenBuffer = 3 * N * 64 * std::int64_t(sizeof(float));
  if (!(atN >= 0 && at2N - atN < tokenBuffer / 4)) {
    std::printf("  the backward's memory beyond its gradients: %lld bytes at N = %lld, %lld at 2N\n", (long long)atN,
                (long long)N, (long long)at2N);
    CHECK(false);
  }
}

TEST(linear_angular_reference_gradient_matches_finite_differences) {
  for (AngularSetup a : {AngularSetup{0, 3, true, 0.1, 0.9, 0.4}, AngularSetup{1, 3, true, 0.1, 0.9, 0.4},
                         AngularSetup{0, 5, false}}) {
    Dims s{2, 2, a.form == 1 ? 10 : 6, 3};
    Vec q = toDouble(randomVector(std::size_t(s.size()), 2.0f)), k = toDouble(randomVector(std::size_t(s.size()), 2.0f)),
        v = toDouble(randomVector(std::size_t(s.size()))), dy = toDouble(randomVector(std::size_t(s.size())));
    Vec w = toDouble(randomVector(std::size_t(s.H * weightsPerHead(a))));
    AngularRef f = angularForward(s, a, q, k, v, w);
    Grads g = angularBackward(s, a, q, k, v, w, dy, f);
    auto loss = [&] {
      AngularRef r = angularForward(s, a, q, k, v, w, a.aux ? &f.M : nullptr);
      return a.lambda * r.l1 + dot(r.y, dy);
    };
    double worst = worstFiniteDifference({{&q, &g.dq}, {&k, &g.dk}, {&v, &g.dv}, {&w, &g.dw}}, loss);
    if (worst > 1e-6) std::fprintf(stderr, "  form %d aux %d: finite differences differ by %g\n", a.form, a.aux, worst);
    CHECK(worst <= 1e-6);
  }
}

// The castling switch: at tau >= 1 nothing survives the mask, and the training form must give
// bit-for-bit the inference form's output and gradients.
TEST(linear_angular_aux_at_tau_one_is_bit_exact) {
  for (const Dims& s : {Dims{2, 3, 197, 64}, Dims{1, 1, 17, 24}}) {
    for (int form = 0; form < 2; ++form) {
      AngularSetup off{form, 3, false}, on{form, 3, true, 1.0, 0.125, 0.5};
      AngularData x = angularData(s, off, 3.0f);
      auto a = runAngularForward(s, off, x);
      auto b = runAngularForward(s, on, x);
      for (int i = 0; i < 5; ++i) CHECK(sameBits(a[i], b[i]));
      CHECK(b[8].data()[0] == 0.0f);
      auto ga = runAngularBackward(s, off, x, a);
      auto gb = runAngularBackward(s, on, x, b);
      for (int i = 0; i < 4; ++i) CHECK(sameBits(ga[i], gb[i]));
    }
  }
}


// In a ViT, q, k and v are splitHeads' views of the qkv projection (rows 3 H d apart), read in
// place by the attention kernels, which write y, and in the backward dq, dk and dv, in token
// order for mergeHeads (attribute tokenOrder); the results must be the bits of the same op on
// contiguous tensors, at widths that are and are not whole vectors, with a last query block of a
// few rows, in both convolution forms and with the auxiliary branch. One head of 197 tokens on
// four threads cuts the flash backward's keys into ranges whose dq are summed into the view.
TEST(attention_ops_read_split_heads_views_in_place) {
  ThreadPool& pool = ThreadPool::global();
  const int threadsBefore = pool.threads();
  pool.setThreads(4);
  for (const Dims& s :
       {Dims{2, 3, 197, 64}, Dims{1, 2, 37, 24}, Dims{2, 1, 17, 32}, Dims{1, 4, 5, 16}, Dims{1, 1, 197, 64}}) {
    const std::int64_t row = 3 * s.H * s.d;
    SplitHeadsViews split = splitHeadsViews(s.B, s.H, s.N, s.d);
    const Tensor& qkv = split.qkv;
    const std::vector<Tensor>& views = split.qkvViews;
    const Tensor& dyView = split.dy;
    std::vector<Tensor> dense;
    bool layout = dyView.hasDenseRows();
    for (const Tensor& t : views) {
      layout = layout && t.hasDenseRows() && !t.isContiguous() && t.shape() == s.full();
      dense.push_back(t.contiguous());
    }
    // The copies hold what splitHeads means: part p, head h, token n is qkv[b, n, (p H + h) d + c].
    bool values = true;
    for (std::int64_t p = 0; p < 3; ++p)
      for (std::int64_t b = 0; b < s.B; ++b)
        for (std::int64_t h = 0; h < s.H; ++h)
          for (std::int64_t n = 0; n < s.N; ++n)
            for (std::int64_t c = 0; c < s.d; ++c)
              values = values && dense[std::size_t(p)].data()[((b * s.H + h) * s.N + n) * s.d + c] ==
                                     qkv.data()[(b * s.N + n) * row + (p * s.H + h) * s.d + c];
    CHECK(layout);
    CHECK(values);
    Tensor dyDense = dyView.contiguous();

    auto viewed = runOp("attentionSoftmax", {views[0], views[1], views[2]}, Attrs());
    auto copied = runOp("attentionSoftmax", {dense[0], dense[1], dense[2]}, Attrs());
    CHECK(sameBits(viewed[0], copied[0]) && sameBits(viewed[1], copied[1]));
    // y in token order: the same values, and mergeHeads hands on its storage as they lie.
    Attrs tokenOrder;
    tokenOrder.set("tokenOrder", 1);
    auto ordered = runOp("attentionSoftmax", {views[0], views[1], views[2]}, tokenOrder);
    CHECK(!ordered[0].isContiguous() && sameBits(ordered[0].contiguous(), copied[0]));
    CHECK(mergedInPlace({ordered[0]}, {copied[0]}));
    auto gOrdered = runOp("attentionSoftmaxBackward", {views[0], views[1], views[2], ordered[0], copied[1], dyView}, Attrs());
    auto gViewed = runOp("attentionSoftmaxBackward", {views[0], views[1], views[2], copied[0], copied[1], dyView}, Attrs());
    for (int i = 0; i < 3; ++i) CHECK(sameBits(gOrdered[std::size_t(i)], gViewed[std::size_t(i)]));
    auto gCopied = runOp("attentionSoftmaxBackward", {dense[0], dense[1], dense[2], copied[0], copied[1], dyDense}, Attrs());
    for (int i = 0; i < 3; ++i) CHECK(sameBits(gViewed[std::size_t(i)], gCopied[std::size_t(i)]));
    // dq, dk and dv in token order: the same values, one storage that mergeHeads hands on.
    auto gTokens = runOp("attentionSoftmaxBackward", {views[0], views[1], views[2], ordered[0], copied[1], dyView}, tokenOrder);
    for (std::size_t i = 0; i < 3; ++i)
      CHECK(!gTokens[i].isContiguous() && sameBits(gTokens[i].contiguous(), gCopied[i]));
    CHECK(mergedInPlace(gTokens, gCopied));

    for (const AngularSetup& a : angularSetups(s)) {
      Attrs attrs = angularAttrs(a);
      Tensor w = tensorOf(weightShape(s, a), randomVector(std::size_t(s.H * weightsPerHead(a)), 0.3f));
      auto fViewed = runOp("attentionLinearAngular", {views[0], views[1], views[2], w}, attrs);
      auto fCopied = runOp("attentionLinearAngular", {dense[0], dense[1], dense[2], w}, attrs);
      bool same = fViewed.size() == fCopied.size();
      for (std::size_t i = 0; same && i < fViewed.size(); ++i) same = sameBits(fViewed[i], fCopied[i]);
      CHECK(same);
      Attrs orderedAttrs = attrs;
      orderedAttrs.set("tokenOrder", 1);
      Tensor yOrdered = runOp("attentionLinearAngular", {views[0], views[1], views[2], w}, orderedAttrs)[0];
      CHECK(!yOrdered.isContiguous() && sameBits(yOrdered.contiguous(), fCopied[0]));
      CHECK(runOp("mergeHeads", {yOrdered}, Attrs())[0].data() == yOrdered.data());
      std::vector<std::optional<Tensor>> in = {views[0], views[1], views[2], w};
      for (int i = 1; i <= 4; ++i) in.push_back(fCopied[std::size_t(i)]);
      for (int i = 5; i <= 7; ++i) in.push_back(a.aux ? std::optional<Tensor>(fCopied[std::size_t(i)]) : std::nullopt);
      in.push_back(dyView);
      auto bViewed = runOp("attentionLinearAngularBackward", in, attrs);
      auto bTokens = runOp("attentionLinearAngularBackward", in, orderedAttrs);
      in[0] = dense[0], in[1] = dense[1], in[2] = dense[2], in.back() = dyDense;
      auto bCopied = runOp("attentionLinearAngularBackward", in, attrs);
      for (int i = 0; i < 4; ++i) CHECK(sameBits(bViewed[std::size_t(i)], bCopied[std::size_t(i)]));
      for (std::size_t i = 0; i < 3; ++i)
        CHECK(!bTokens[i].isContiguous() && sameBits(bTokens[i].contiguous(), bCopied[i]));
      CHECK(sameBits(bTokens[3], bCopied[3]));
      CHECK(mergedInPlace({bTokens[0], bTokens[1], bTokens[2]}, {bCopied[0], bCopied[1], bCopied[2]}));
    }
  }
  pool.setThreads(threadsBefore);
}

TEST(zero_rows_give_finite_outputs) {
  Dims s{1, 2, 17, 16};
  for (int which = 0; which < 3; ++which) {
    AngularSetup a{1, 3, true, 0.02, 0.25, 0.1};
    AngularData x = angularData(s, a, 1.0f);
    std::vector<float>& t = which == 0 ? x.q : which == 1 ? x.k : x.v;
    std::fill(t.begin() + 3 * s.d, t.begin() + 4 * s.d, 0.0f);            // one row
    std::fill(t.begin() + s.N * s.d, t.begin() + 2 * s.N * s.d, 0.0f);    // a whole head
    auto fwd = runAngularForward(s, a, x);
    CHECK(allFinite(fwd));
    CHECK(allFinite(runAngularBackward(s, a, x, fwd)));
    Tensor q = tensorOf(s.full(), x.q), k = tensorOf(s.full(), x.k), v = tensorOf(s.full(), x.v);
    auto sm = runOp("attentionSoftmax", {q, k, v}, Attrs());
    CHECK(allFinite(sm));
    CHECK(allFinite(runOp("attentionSoftmaxBackward", {q, k, v, sm[0], sm[1], tensorOf(s.full(), x.dy)}, Attrs())));
  }
}

// ---- errors ----

TEST(attention_ops_reject_bad_inputs) {
  Tensor q = Tensor::zeros({1, 2, 17, 8}), k3 = Tensor::zeros({2, 17, 8}), kOther = Tensor::zeros({1, 2, 16, 8});
  Attrs none;
  CHECK(failsWith([&] { runOp("attentionSoftmax", {k3, k3, k3}, none); }, "expected 4 dimensions"));
  CHECK(failsWith([&] { runOp("attentionSoftmax", {q, kOther, q}, none); }, "k has shape [1, 2, 16, 8]"));
  CHECK(failsWith([&] { runOp("attentionSoftmax", {q, q, kOther}, none); }, "v has shape"));
  CHECK(failsWith([&] { runOp("attentionSoftmax", {q, q}, none); }, "v"));
  CHECK(failsWith([&] { runOp("attentionSoftmaxBackward", {q, q, q, q, Tensor::zeros({1, 2, 16}), q}, none); },
                  "lse has shape"));
  Tensor empty = Tensor::zeros({1, 2, 0, 8});
  CHECK(failsWith([&] { runOp("attentionSoftmax", {empty, empty, empty}, none); }, "at least one token"));

  Attrs tokens, spatial;
  spatial.set("form", 1);
  auto la = [&](const Tensor& qkv, const Tensor& w, const Attrs& attrs) {
    runOp("attentionLinearAngular", {qkv, qkv, qkv, w}, attrs);
  };
  CHECK(failsWith([&] { la(q, Tensor::zeros({2, 4}), tokens); }, "expected an odd number"));
  CHECK(failsWith([&] { la(q, Tensor::zeros({3, 3}), tokens); }, "dconvWeight has shape [3, 3], expected [2, K]"));
  CHECK(failsWith([&] { la(q, Tensor::zeros({2, 3, 3}), tokens); }, "expected [2, K]"));
  CHECK(failsWith([&] { la(q, Tensor::zeros({2, 3}), spatial); }, "expected [2, K, K]"));
  CHECK(failsWith([&] { la(q, Tensor::zeros({2, 3, 5}), spatial); }, "expected [2, K, K]"));
  CHECK(failsWith([&] { la(q, Tensor::zeros({2, 2, 2}), spatial); }, "expected an odd number"));
  CHECK(failsWith([&] { la(Tensor::zeros({1, 2, 18, 8}), Tensor::zeros({2, 3, 3}), spatial); }, "square grid"));
  CHECK(failsWith([&] { la(Tensor::zeros({1, 2, 1, 8}), Tensor::zeros({2, 1, 1}), spatial); }, "square grid"));
  Attrs badForm;
  badForm.set("form", 2);
  CHECK(failsWith([&] { la(q, Tensor::zeros({2, 3}), badForm); }, "form"));
  CHECK(failsWith([&] { runOp("attentionLinearAngular", {q, kOther, q, Tensor::zeros({2, 3})}, tokens); }, "k has shape"));

  // The backward: saved tensors checked, and the aux ones required only with aux.
  Tensor w = Tensor::zeros({2, 3});
  Attrs aux;
  aux.set("aux", 1);
  auto fwd = runOp("attentionLinearAngular", {q, q, q, w}, aux);
  std::vector<std::optional<Tensor>> in = {q, q, q, w, fwd[1], fwd[2], fwd[3], fwd[4], std::nullopt,
                                           std::nullopt, std::nullopt, q};
  CHECK(failsWith([&] { runOp("attentionLinearAngularBackward", in, aux); }, "lse"));
  CHECK(allFinite(runOp("attentionLinearAngularBackward", in, tokens)));
  in[6] = Tensor::zeros({1, 2, 8, 7});
  CHECK(failsWith([&] { runOp("attentionLinearAngularBackward", in, tokens); }, "S has shape"));
}

int main() {
  cpu::registerCpuOps(OpRegistry::global());
  return runAll();
}
