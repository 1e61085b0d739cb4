// C++ tests of the Sparsifiner ops (sparse_attention.cpp, sparsifiner_predictor.cpp,
// sparsifiner_reconstruction.cpp) against float64 references written out here from
// docs/algorithms.md section 4; the references' own gradients are checked against finite differences
// of their forward. Every case runs on every ISA the CPU supports (test_util.h).
#include <algorithm>
#include <cstring>
#include <limits>
#include <numeric>
#include <optional>

#include "../core/error.h"
#include "../core/op_registry.h"
#include "../core/thread_pool.h"
#include "../cpu/cpu_ops.h"
#include "../cpu/sparsifiner_kernels.h"
#include "op_helpers.h"
#include "test_util.h"

using namespace castling;
using namespace castling::test;

namespace {

struct Dims {
  std::int64_t B, H, N, d;
  std::int64_t heads() const { return B * H; }
  std::int64_t size() const { return B * H * N * d; }
  std::int64_t r() const { return std::max<std::int64_t>(1, N / 8); }
  std::int64_t half() const { return d / 2; }
  Shape full() const { return {B, H, N, d}; }
  std::string str() const {
    return "B=" + std::to_string(B) + " H=" + std::to_string(H) + " N=" + std::to_string(N) + " d=" + std::to_string(d);
  }
};

// N in {2, 17, 33, 40, 197, 257}, d in {16, 32, 64, 128} (1, 2, 4 and 8 vectors of AVX-512),
// H in {1, 2, 3}, B in {1, 2}.
const std::vector<Dims> kShapes = {
    {1, 1, 2, 16}, {2, 3, 2, 64}, {1, 3, 17, 64}, {2, 1, 17, 16},
    {2, 1, 197, 16}, {1, 3, 197, 64}, {2, 3, 257, 16}, {1, 1, 257, 64},
    {1, 2, 33, 32}, {1, 1, 40, 128},
};
const std::vector<double> kKeepRates = {0.1, 0.25, 0.5, 1.0};

std::int64_t keptFor(double keepRate, std::int64_t N) {
  return std::clamp<std::int64_t>(std::int64_t(std::ceil(keepRate * double(N))), 1, N);
}

// ---- key sets ----

// The keys each (head, row) attends to, ascending; row 0 is every key.
using KeySets = std::vector<std::vector<int>>;

KeySets keySetsOf(const Dims& s, const std::vector<float>& indices, std::int64_t kept) {
  KeySets sets(std::size_t(s.heads() * s.N));
  for (std::int64_t row = 0; row < s.heads() * s.N; ++row) {
    auto& set = sets[std::size_t(row)];
    if (row % s.N == 0) {
      for (int m = 0; m < s.N; ++m) set.push_back(m);
      continue;
    }
    for (std::int64_t j = 0; j < kept; ++j) {
      float m = indices[std::size_t(row * kept + j)];
      if (m >= 0) set.push_back(int(m));
    }
  }
  return sets;
}

// Random valid index rows: between 1 and kept keys each. A third of the rows full, a third with
// -1 padding after the keys (the threshold predictor's rows), a third with padding anywhere.
std::vector<float> randomIndices(const Dims& s, std::int64_t kept) {
  std::vector<float> out(std::size_t(s.heads() * s.N * kept), -1.0f);
  std::vector<int> order(std::size_t(s.N));
  for (std::int64_t row = 0; row < s.heads() * s.N; ++row) {
    std::iota(order.begin(), order.end(), 0);
    std::shuffle(order.begin(), order.end(), rng());
    std::int64_t count = kept == 1 || row % 3 == 0
                             ? kept
                             : std::uniform_int_distribution<std::int64_t>(std::max<std::int64_t>(1, kept / 4), kept)(rng());
    std::vector<int> keys(order.begin(), order.begin() + count);
    std::sort(keys.begin(), keys.end());
    std::vector<bool> pad(std::size_t(kept), false);
    std::fill(pad.begin() + count, pad.end(), true);  // padding after the keys...
    if (row % 3 == 2) std::shuffle(pad.begin(), pad.end(), rng());  // ...or anywhere
    std::size_t next = 0;
    for (std::int64_t j = 0; j < kept; ++j)
      if (!pad[std::size_t(j)]) out[std::size_t(row * kept + j)] = float(keys[next++]);
  }
  return out;
}

// ---- float64 reference: sparse attention ----

struct AttentionRef {
  Vec y, lse;
};

AttentionRef sparseForward(const Dims& s, const Vec& q, const Vec& k, const Vec& v, const KeySets& sets, double scale) {
  AttentionRef r{Vec(std::size_t(s.size())), Vec(std::size_t(s.heads() * s.N))};
  const std::int64_t N = s.N, d = s.d;
  for (std::int64_t row = 0; row < s.heads() * N; ++row) {
    std::int64_t head = row / N;
    const auto& keys = sets[std::size_t(row)];
    Vec p(keys.size());
    double mx = -1e300;
    for (std::size_t j = 0; j < keys.size(); ++j) {
      double dot = 0;
      for (std::int64_t c = 0; c < d; ++c) dot += q[row * d + c] * k[(head * N + keys[j]) * d + c];
      mx = std::max(mx, p[j] = scale * dot);
    }
    double sum = 0;
    for (double& x : p) sum += (x = std::exp(x - mx));
    r.lse[std::size_t(row)] = mx + std::log(sum);
    for (std::int64_t c = 0; c < d; ++c) {
      double acc = 0;
      for (std::size_t j = 0; j < keys.size(); ++j) acc += p[j] * v[(head * N + keys[j]) * d + c];
      r.y[std::size_t(row * d + c)] = acc / sum;
    }
  }
  return r;
}

struct AttentionGrads {
  Vec dq, dk, dv;
};

AttentionGrads sparseBackward(const Dims& s, const Vec& q, const Vec& k, const Vec& v, const KeySets& sets,
                              const Vec& dy, double scale) {
  const std::int64_t N = s.N, d = s.d;
  AttentionGrads g{Vec(std::size_t(s.size())), Vec(std::size_t(s.size())), Vec(std::size_t(s.size()))};
  for (std::int64_t row = 0; row < s.heads() * N; ++row) {
    std::int64_t head = row / N;
    const auto& keys = sets[std::size_t(row)];
    Vec a(keys.size()), dp(keys.size());
    double mx = -1e300, sum = 0, rowTerm = 0;
    for (std::size_t j = 0; j < keys.size(); ++j) {
      double dot = 0, dvdot = 0;
      for (std::int64_t c = 0; c < d; ++c) {
        dot += q[row * d + c] * k[(head * N + keys[j]) * d + c];
        dvdot += dy[row * d + c] * v[(head * N + keys[j]) * d + c];
      }
      mx = std::max(mx, a[j] = scale * dot);
      dp[j] = dvdot;
    }
    for (double& x : a) sum += (x = std::exp(x - mx));
    for (std::size_t j = 0; j < keys.size(); ++j) rowTerm += (a[j] /= sum) * dp[j];
    for (std::size_t j = 0; j < keys.size(); ++j) {
      double ds = a[j] * (dp[j] - rowTerm);
      std::int64_t m = head * N + keys[j];
      for (std::int64_t c = 0; c < d; ++c) {
        g.dq[std::size_t(row * d + c)] += scale * ds * k[m * d + c];
        g.dk[std::size_t(m * d + c)] += scale * ds * q[row * d + c];
        g.dv[std::size_t(m * d + c)] += a[j] * dy[row * d + c];
      }
    }
  }
  return g;
}

// ---- float64 reference: the predictor ----

struct Predictor {
  Vec wq, bq, wk, bk, p, bb;
};

// Random parameters at the scale a trained layer has: projections ~ 1/sqrt(d), P ~ 1/sqrt(N).
Predictor randomPredictor(const Dims& s) {
  auto scaled = [](std::size_t n, double scale) { return toDouble(randomVector(n, float(scale))); };
  std::size_t h = std::size_t(s.half()), d = std::size_t(s.d), nr = std::size_t(s.N * s.r());
  Predictor w{scaled(h * d, 1.0 / std::sqrt(double(s.d))), scaled(h, 0.1), scaled(h * d, 1.0 / std::sqrt(double(s.d))),
              scaled(h, 0.1), scaled(nr, 2.0 / std::sqrt(double(s.N))), scaled(nr, 1.0)};
  // Round to float so that the op and the reference see the same parameters.
  for (Vec* x : {&w.wq, &w.bq, &w.wk, &w.bk, &w.p, &w.bb})
    for (double& e : *x) e = double(float(e));
  return w;
}

std::vector<float> toFloat(const Vec& x) { return std::vector<float>(x.begin(), x.end()); }

std::vector<std::optional<Tensor>> predictorInputs(const Dims& s, const std::vector<float>& q, const std::vector<float>& k,
                                                   const Predictor& w) {
  return {tensorOf(s.full(), q), tensorOf(s.full(), k), tensorOf({s.half(), s.d}, toFloat(w.wq)),
          tensorOf({s.half()}, toFloat(w.bq)), tensorOf({s.half(), s.d}, toFloat(w.wk)), tensorOf({s.half()}, toFloat(w.bk)),
          tensorOf({s.N, s.r()}, toFloat(w.p)), tensorOf({s.N, s.r()}, toFloat(w.bb))};
}

struct PredictorRef {
  Vec qp, kp, Kp, C, approx;  // approx: (heads, N, N)
};

// One float64 row of the approximation from a query's r coefficients c: out[m] = c . Bb[m].
void approxRowFrom(const Dims& s, const double* c, const Vec& bb, double* out) {
  const std::int64_t r = s.r();
  for (std::int64_t m = 0; m < s.N; ++m) {
    double x = 0;
    for (std::int64_t j = 0; j < r; ++j) x += c[j] * bb[std::size_t(m * r + j)];
    out[m] = x;
  }
}

PredictorRef predictorForward(const Dims& s, const Vec& q, const Vec& k, const Predictor& w, double scale) {
  const std::int64_t N = s.N, d = s.d, h2 = s.half(), r = s.r(), heads = s.heads();
  PredictorRef f{Vec(std::size_t(heads * N * h2)), Vec(std::size_t(heads * N * h2)), Vec(std::size_t(heads * h2 * r)),
                 Vec(std::size_t(heads * N * r)), Vec(std::size_t(heads * N * N))};
  for (std::int64_t t = 0; t < heads * N; ++t)
    for (std::int64_t a = 0; a < h2; ++a) {
      double x = w.bq[a], y = w.bk[a];
      for (std::int64_t c = 0; c < d; ++c) {
        x += q[t * d + c] * w.wq[a * d + c];
        y += k[t * d + c] * w.wk[a * d + c];
      }
      f.qp[t * h2 + a] = x;
      f.kp[t * h2 + a] = y;
    }
  for (std::int64_t h = 0; h < heads; ++h) {
    for (std::int64_t a = 0; a < h2; ++a)
      for (std::int64_t j = 0; j < r; ++j) {
        double x = 0;
        for (std::int64_t m = 0; m < N; ++m) x += f.kp[(h * N + m) * h2 + a] * w.p[m * r + j];
        f.Kp[(h * h2 + a) * r + j] = x;
      }
    for (std::int64_t n = 0; n < N; ++n) {
      double* c = &f.C[(h * N + n) * r];
      double mx = -1e300, sum = 0;
      for (std::int64_t j = 0; j < r; ++j) {
        double x = 0;
        for (std::int64_t a = 0; a < h2; ++a) x += f.qp[(h * N + n) * h2 + a] * f.Kp[(h * h2 + a) * r + j];
        mx = std::max(mx, c[j] = scale * x);
      }
      for (std::int64_t j = 0; j < r; ++j) sum += (c[j] = std::exp(c[j] - mx));
      for (std::int64_t j = 0; j < r; ++j) c[j] /= sum;
      approxRowFrom(s, c, w.bb, &f.approx[std::size_t((h * N + n) * N)]);
    }
  }
  return f;
}

// The reference top-k of one row: the `kept` largest by (value descending, index ascending).
std::vector<int> referenceTopK(const double* row, std::int64_t n, std::int64_t kept) {
  std::vector<int> order(static_cast<std::size_t>(n));
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return row[a] > row[b]; });
  return order;  // the first `kept` are the set; the rest follow in rank order
}

// Checks one op row of top-k indices against the float64 row. Where the reference's kept-th and
// (kept+1)-th values differ by more than `margin` the sets must match exactly; otherwise (a near
// tie that float rounding may flip) every chosen value must be within margin of the kept-th.
// Returns whether the exact comparison applied.
bool checkTopKRow(const float* got, const double* row, std::int64_t n, std::int64_t kept, double margin,
                  const std::string& where, bool& ok) {
  std::vector<int> order = referenceTopK(row, n, kept);
  std::vector<int> chosen;
  for (std::int64_t j = 0; j < kept; ++j) {
    float m = got[j];
    if (!(m >= 0 && m < float(n) && m == std::floor(m)) || (j > 0 && !(m > got[j - 1]))) {
      std::fprintf(stderr, "  %s: slot %ld is %g (not an ascending key index)\n", where.c_str(), long(j), double(m));
      ok = false;
      return false;
    }
    chosen.push_back(int(m));
  }
  double kth = row[order[std::size_t(kept - 1)]];
  bool separated = kept == n || kth - row[order[std::size_t(kept)]] > margin;
  if (separated) {
    std::vector<int> want(order.begin(), order.begin() + kept);
    std::sort(want.begin(), want.end());
    if (want != chosen) {
      std::fprintf(stderr, "  %s: top-%ld set differs from the reference\n", where.c_str(), long(kept));
      ok = false;
    }
    return true;
  }
  for (int m : chosen)
    if (row[m] < kth - margin) {
      std::fprintf(stderr, "  %s: chose key %d with %g, below the kept-th value %g\n", where.c_str(), m, row[m], kth);
      ok = false;
    }
  return false;
}

// ---- float64 reference: attention reconstruction ----

struct ReconstructionRef {
  double loss = 0;
  Predictor grad;  // d loss / d each parameter
};

// lse of the dense softmax attention with scale attnScale, per (head, row).
Vec denseLse(const Dims& s, const Vec& q, const Vec& k, double attnScale) {
  Vec lse(std::size_t(s.heads() * s.N));
  for (std::int64_t row = 0; row < s.heads() * s.N; ++row) {
    std::int64_t head = row / s.N;
    Vec sc(std::size_t(s.N));
    double mx = -1e300, sum = 0;
    for (std::int64_t m = 0; m < s.N; ++m) {
      double dot = 0;
      for (std::int64_t c = 0; c < s.d; ++c) dot += q[row * s.d + c] * k[(head * s.N + m) * s.d + c];
      mx = std::max(mx, sc[std::size_t(m)] = attnScale * dot);
    }
    for (double x : sc) sum += std::exp(x - mx);
    lse[std::size_t(row)] = mx + std::log(sum);
  }
  return lse;
}

ReconstructionRef reconstruction(const Dims& s, const Vec& q, const Vec& k, const Predictor& w, const Vec& lse,
                                 double scale, double attnScale, bool withGrad = true) {
  const std::int64_t N = s.N, d = s.d, h2 = s.half(), r = s.r(), heads = s.heads();
  PredictorRef f = predictorForward(s, q, k, w, scale);
  ReconstructionRef out;
  Predictor& g = out.grad;
  g = {Vec(w.wq.size()), Vec(w.bq.size()), Vec(w.wk.size()), Vec(w.bk.size()), Vec(w.p.size()), Vec(w.bb.size())};
  for (std::int64_t h = 0; h < heads; ++h) {
    Vec dC(std::size_t(N * r)), dqp(std::size_t(N * h2)), dKp(std::size_t(h2 * r));
    for (std::int64_t n = 1; n < N; ++n) {
      std::int64_t row = h * N + n;
      for (std::int64_t m = 0; m < N; ++m) {
        double dot = 0;
        for (std::int64_t c = 0; c < d; ++c) dot += q[row * d + c] * k[(h * N + m) * d + c];
        double diff = f.approx[row * N + m] - std::exp(attnScale * dot - lse[row]);
        out.loss += diff * diff;
        for (std::int64_t j = 0; j < r; ++j) {
          dC[n * r + j] += 2 * diff * w.bb[m * r + j];
          g.bb[m * r + j] += 2 * diff * f.C[row * r + j];
        }
      }
    }
    if (!withGrad) continue;
    for (std::int64_t n = 0; n < N; ++n) {  // back through the softmax: dS = scale C (dC - dC.C)
      const double* c = &f.C[(h * N + n) * r];
      double dot = 0;
      for (std::int64_t j = 0; j < r; ++j) dot += dC[n * r + j] * c[j];
      for (std::int64_t j = 0; j < r; ++j) dC[n * r + j] = scale * c[j] * (dC[n * r + j] - dot);
    }
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t j = 0; j < r; ++j)
        for (std::int64_t a = 0; a < h2; ++a) {
          dqp[n * h2 + a] += dC[n * r + j] * f.Kp[(h * h2 + a) * r + j];
          dKp[a * r + j] += f.qp[(h * N + n) * h2 + a] * dC[n * r + j];
        }
    for (std::int64_t m = 0; m < N; ++m)  // Kp = kp^T P
      for (std::int64_t a = 0; a < h2; ++a)
        for (std::int64_t j = 0; j < r; ++j) {
          double dkp = w.p[m * r + j] * dKp[a * r + j];
          g.p[m * r + j] += f.kp[(h * N + m) * h2 + a] * dKp[a * r + j];
          g.bk[a] += dkp;
          for (std::int64_t c = 0; c < d; ++c) g.wk[a * d + c] += dkp * k[(h * N + m) * d + c];
        }
    for (std::int64_t n = 0; n < N; ++n)
      for (std::int64_t a = 0; a < h2; ++a) {
        g.bq[a] += dqp[n * h2 + a];
        for (std::int64_t c = 0; c < d; ++c) g.wq[a * d + c] += dqp[n * h2 + a] * q[(h * N + n) * d + c];
      }
  }
  return out;
}

// A reconstruction op run on float inputs, with the float64 lse the op is meant to receive.
std::vector<Tensor> runReconstruction(const Dims& s, const std::vector<float>& q, const std::vector<float>& k,
                                      const Predictor& w, const Vec& lse, const Attrs& attrs) {
  auto in = predictorInputs(s, q, k, w);
  in.push_back(tensorOf({s.B, s.H, s.N}, toFloat(lse)));
  return runOp("sparsifinerReconstruction", in, attrs);
}

}  // namespace

// ---- sparse attention ----

TEST(sparse_attention_forward_matches_float64_reference) {
  for (Dims s : kShapes) {
    for (double rate : kKeepRates) {
      std::int64_t kept = keptFor(rate, s.N);
      auto q = randomVector(std::size_t(s.size()), 2.0f), k = randomVector(std::size_t(s.size()), 2.0f),
           v = randomVector(std::size_t(s.size()));
      auto idx = randomIndices(s, kept);
      auto out = runOp("sparseAttention", {tensorOf(s.full(), q), tensorOf(s.full(), k), tensorOf(s.full(), v),
                                           tensorOf({s.B, s.H, s.N, kept}, idx)}, Attrs());
      double scale = 1.0 / std::sqrt(double(s.d));
      AttentionRef want = sparseForward(s, toDouble(q), toDouble(k), toDouble(v), keySetsOf(s, idx, kept), scale);
      std::string where = s.str() + " keep=" + std::to_string(rate);
      CHECK(out.size() == 2);
      CHECK(out[0].shape() == s.full());
      CHECK((out[1].shape() == Shape{s.B, s.H, s.N}));
      CHECK(close(valuesOf(out[0]), want.y, 2e-5, "y", where));
      CHECK(close(valuesOf(out[1]), want.lse, 2e-6, "lse", where, kLseFloor));
    }
  }
  // A width that is not a multiple of any vector, and an explicit scale.
  Dims s{1, 2, 50, 5};
  auto q = randomVector(std::size_t(s.size())), k = randomVector(std::size_t(s.size())), v = randomVector(std::size_t(s.size()));
  auto idx = randomIndices(s, 13);
  Attrs attrs;
  attrs.set("scale", 0.7);
  auto out = runOp("sparseAttention", {tensorOf(s.full(), q), tensorOf(s.full(), k), tensorOf(s.full(), v),
                                       tensorOf({s.B, s.H, s.N, 13}, idx)}, attrs);
  AttentionRef want = sparseForward(s, toDouble(q), toDouble(k), toDouble(v), keySetsOf(s, idx, 13), 0.7);
  CHECK(close(valuesOf(out[0]), want.y, 2e-5, "y d=5", s.str()));
  CHECK(close(valuesOf(out[1]), want.lse, 2e-6, "lse d=5", s.str(), kLseFloor));
}

// At keep rate 1 every row keeps every key: the sparse op is dense softmax attention.
TEST(sparse_attention_keeping_every_key_equals_softmax_attention) {
  for (Dims s : kShapes) {
    auto q = randomVector(std::size_t(s.size()), 2.0f), k = randomVector(std::size_t(s.size()), 2.0f),
         v = randomVector(std::size_t(s.size()));
    std::vector<float> idx(std::size_t(s.heads() * s.N * s.N));
    for (std::size_t i = 0; i < idx.size(); ++i) idx[i] = float(std::int64_t(i) % s.N);
    Tensor tq = tensorOf(s.full(), q), tk = tensorOf(s.full(), k), tv = tensorOf(s.full(), v);
    auto sparse = runOp("sparseAttention", {tq, tk, tv, tensorOf({s.B, s.H, s.N, s.N}, idx)}, Attrs());
    auto dense = runOp("attentionSoftmax", {tq, tk, tv}, Attrs());
    CHECK(close(valuesOf(sparse[0]), toDouble(valuesOf(dense[0])), 2e-5, "y vs attentionSoftmax", s.str()));
    CHECK(close(valuesOf(sparse[1]), toDouble(valuesOf(dense[1])), 2e-6, "lse vs attentionSoftmax", s.str(), kLseFloor));
  }
}

TEST(sparse_attention_backward_matches_float64_reference) {
  for (Dims s : kShapes) {
    for (double rate : kKeepRates) {
      std::int64_t kept = keptFor(rate, s.N);
      auto q = randomVector(std::size_t(s.size()), 2.0f), k = randomVector(std::size_t(s.size()), 2.0f),
           v = randomVector(std::size_t(s.size())), dy = randomVector(std::size_t(s.size()));
      auto idx = randomIndices(s, kept);
      Tensor tq = tensorOf(s.full(), q), tk = tensorOf(s.full(), k), tv = tensorOf(s.full(), v),
             ti = tensorOf({s.B, s.H, s.N, kept}, idx), tdy = tensorOf(s.full(), dy);
      auto fwd = runOp("sparseAttention", {tq, tk, tv, ti}, Attrs());
      auto got = runOp("sparseAttentionBackward", {tq, tk, tv, ti, fwd[0], fwd[1], tdy}, Attrs());
      double scale = 1.0 / std::sqrt(double(s.d));
      AttentionGrads want = sparseBackward(s, toDouble(q), toDouble(k), toDouble(v), keySetsOf(s, idx, kept),
                                           toDouble(dy), scale);
      std::string where = s.str() + " keep=" + std::to_string(rate);
      CHECK(got.size() == 3);
      CHECK(close(valuesOf(got[0]), want.dq, 1e-4, "dq", where));
      CHECK(close(valuesOf(got[1]), want.dk, 1e-4, "dk", where));
      CHECK(close(valuesOf(got[2]), want.dv, 1e-4, "dv", where));
      // Deterministic: the scatter-added dk, dv come out bit for bit the same on a second run.
      auto again = runOp("sparseAttentionBackward", {tq, tk, tv, ti, fwd[0], fwd[1], tdy}, Attrs());
      for (int i = 0; i < 3; ++i) CHECK(sameBits(got[i], again[i]));
    }
  }
}

// In a ViT, q, k and v are splitHeads' views of the qkv projection (rows 3 H d apart), which the
// predictor and the sparse attention read in place, the attention writing y, and in the backward
// dq, dk and dv, in token order for mergeHeads (attribute tokenOrder): the bits of the same ops on
// contiguous copies, on the blocked kernels (d of whole vectors) and the any-width ones (d = 24),
// with a short last query block. One head on four threads cuts the backward's queries into ranges
// whose dk and dv are summed into the views; k and v of different row strides are copied first
// (the gathers share one row offset).
TEST(sparsifiner_ops_read_split_heads_views_in_place) {
  ThreadPool& pool = ThreadPool::global();
  const int threadsBefore = pool.threads();
  pool.setThreads(4);
  for (const Dims& s : {Dims{2, 3, 197, 64}, Dims{1, 2, 37, 24}, Dims{2, 1, 17, 32}, Dims{1, 1, 197, 64}}) {
    for (double rate : {0.25, 1.0}) {
      const std::int64_t kept = keptFor(rate, s.N);
      SplitHeadsViews split = splitHeadsViews(s.B, s.H, s.N, s.d);
      const std::vector<Tensor>& views = split.qkvViews;
      const Tensor& dyView = split.dy;
      Tensor idx = tensorOf({s.B, s.H, s.N, kept}, randomIndices(s, kept));
      std::vector<Tensor> dense;
      for (const Tensor& t : views) dense.push_back(t.contiguous());
      Tensor dyDense = dyView.contiguous();
      const std::string where = s.str() + " keep=" + std::to_string(rate);
      CHECK(!views[0].isContiguous() && views[0].hasDenseRows() && !dyView.isContiguous());

      auto copied = runOp("sparseAttention", {dense[0], dense[1], dense[2], idx}, Attrs());
      auto viewed = runOp("sparseAttention", {views[0], views[1], views[2], idx}, Attrs());
      CHECK(sameBits(viewed[0], copied[0]) && sameBits(viewed[1], copied[1]));
      auto mixed = runOp("sparseAttention", {views[0], views[1], dense[2], idx}, Attrs());
      CHECK(sameBits(mixed[0], copied[0]));
      Attrs tokenOrder;
      tokenOrder.set("tokenOrder", 1);
      auto ordered = runOp("sparseAttention", {views[0], views[1], views[2], idx}, tokenOrder);
      CHECK(!ordered[0].isContiguous() && sameBits(ordered[0].contiguous(), copied[0]) && sameBits(ordered[1], copied[1]));
      CHECK(mergedInPlace({ordered[0]}, {copied[0]}));

      auto gCopied = runOp("sparseAttentionBackward", {dense[0], dense[1], dense[2], idx, copied[0], copied[1], dyDense}, Attrs());
      auto gViewed = runOp("sparseAttentionBackward", {views[0], views[1], views[2], idx, ordered[0], copied[1], dyView}, Attrs());
      bool same = true;
      for (std::size_t i = 0; i < 3; ++i) same = same && sameBits(gViewed[i], gCopied[i]);
      auto gTokens = runOp("sparseAttentionBackward", {views[0], views[1], views[2], idx, ordered[0], copied[1], dyView}, tokenOrder);
      for (std::size_t i = 0; i < 3; ++i) same = same && !gTokens[i].isContiguous() && sameBits(gTokens[i].contiguous(), gCopied[i]);
      if (!same) std::fprintf(stderr, "  %s: gradients from views differ from those of copies\n", where.c_str());
      CHECK(same);
      CHECK(mergedInPlace(gTokens, gCopied));

      auto predictor = predictorInputs(s, valuesOf(dense[0]), valuesOf(dense[1]), randomPredictor(s));
      auto pCopied = runOp("sparsifinerPredict", predictor, Attrs());
      predictor[0] = views[0], predictor[1] = views[1];
      auto pViewed = runOp("sparsifinerPredict", predictor, Attrs());
      bool samePrediction = pViewed.size() == pCopied.size();
      for (std::size_t i = 0; samePrediction && i < pViewed.size(); ++i) samePrediction = sameBits(pViewed[i], pCopied[i]);
      CHECK(samePrediction);
    }
  }
  pool.setThreads(threadsBefore);
}

TEST(sparse_attention_reference_gradient_matches_finite_differences) {
  Dims s{1, 2, 6, 3};
  std::int64_t kept = 3;
  Vec q = toDouble(randomVector(std::size_t(s.size()))), k = toDouble(randomVector(std::size_t(s.size()))),
      v = toDouble(randomVector(std::size_t(s.size()))), dy = toDouble(randomVector(std::size_t(s.size())));
  KeySets sets = keySetsOf(s, randomIndices(s, kept), kept);
  double scale = 0.8;
  AttentionGrads g = sparseBackward(s, q, k, v, sets, dy, scale);
  auto loss = [&] { return dot(sparseForward(s, q, k, v, sets, scale).y, dy); };
  double worst = worstFiniteDifference({{&q, &g.dq}, {&k, &g.dk}, {&v, &g.dv}}, loss);
  if (worst > 1e-7) std::fprintf(stderr, "  finite differences differ by %g\n", worst);
  CHECK(worst <= 1e-7);
}

// ---- the predictor ----

TEST(predictor_matches_float64_reference_and_topk_is_exact) {
  int exactRows = 0, rows = 0;
  // The shapes above compute each batch entry's Kp = kp^T P as a job of its own; at 600 tokens
  // one entry's product is spread over the pool instead.
  std::vector<Dims> shapes = kShapes;
  shapes.push_back({1, 2, 600, 64});
  for (Dims s : shapes) {
    for (double rate : kKeepRates) {
      std::int64_t kept = keptFor(rate, s.N);
      auto q = randomVector(std::size_t(s.size())), k = randomVector(std::size_t(s.size()));
      Predictor w = randomPredictor(s);
      Attrs attrs;
      attrs.set("keepRate", rate);
      auto out = runOp("sparsifinerPredict", predictorInputs(s, q, k, w), attrs);
      double scale = 1.0 / std::sqrt(double(s.H));
      PredictorRef f = predictorForward(s, toDouble(q), toDouble(k), w, scale);
      std::string where = s.str() + " keep=" + std::to_string(rate);
      CHECK(out.size() == 4);
      CHECK((out[0].shape() == Shape{s.B, s.H, s.N, kept}));
      CHECK(close(valuesOf(out[1]), f.C, 2e-5, "C", where));
      CHECK(close(valuesOf(out[2]), f.qp, 2e-5, "qp", where));
      CHECK(close(valuesOf(out[3]), f.Kp, 2e-5, "Kp", where));
      auto idx = valuesOf(out[0]);
      bool ok = true;
      for (std::int64_t row = 0; row < s.heads() * s.N; ++row) {
        const float* got = idx.data() + row * kept;
        if (row % s.N == 0) {  // the class token: dense, all slots -1
          for (std::int64_t j = 0; j < kept; ++j) ok = ok && got[j] == -1.0f;
          continue;
        }
        ++rows;
        exactRows += checkTopKRow(got, &f.approx[std::size_t(row * s.N)], s.N, kept, 1e-4,
                                  where + " row " + std::to_string(row), ok);
      }
      CHECK(ok);
      // The predicted mask drives the sparse attention end to end.
      auto v = randomVector(std::size_t(s.size()));
      auto y = runOp("sparseAttention", {tensorOf(s.full(), q), tensorOf(s.full(), k), tensorOf(s.full(), v), out[0]}, Attrs());
      AttentionRef want = sparseForward(s, toDouble(q), toDouble(k), toDouble(v), keySetsOf(s, idx, kept),
                                        1.0 / std::sqrt(double(s.d)));
      CHECK(close(valuesOf(y[0]), want.y, 2e-5, "y from predicted indices", where));
    }
  }
  // Most rows must have had a clear gap, or the comparison above proved little.
  if (exactRows * 10 < rows * 8) std::fprintf(stderr, "  only %d of %d rows compared exactly\n", exactRows, rows);
  CHECK(exactRows * 10 >= rows * 8);
}

// The predictor keeps Bb^T with Bb's storage (Storage::derived): a write to Bb in place (an
// optimizer step) must reach the next call, with the coefficient top-k (combineRows reads Bb^T)
// and without (a GEMM does).
TEST(predictor_sees_basis_written_in_place) {
  Dims s{1, 2, 57, 16};
  const std::int64_t kept = keptFor(0.25, s.N);
  auto q = randomVector(std::size_t(s.size())), k = randomVector(std::size_t(s.size()));
  Predictor w = randomPredictor(s);
  auto in = predictorInputs(s, q, k, w);  // the same tensors on every call
  const double scale = 1.0 / std::sqrt(double(s.H));
  for (std::int64_t coefficientKeep : {0, 3}) {
    Attrs attrs;
    attrs.set("keepRate", 0.25);
    attrs.set("coefficientKeep", coefficientKeep);
    for (int round = 0; round < 3; ++round) {
      auto out = runOp("sparsifinerPredict", in, attrs);
      auto idx = valuesOf(out[0]);
      // The float64 reference of the same C' (coefficient top-k: the op's own choice of C').
      PredictorRef f = predictorForward(s, toDouble(q), toDouble(k), w, scale);
      if (coefficientKeep > 0) {
        Vec c = toDouble(valuesOf(out[1]));
        for (std::int64_t row = 0; row < s.heads() * s.N; ++row)
          approxRowFrom(s, &c[std::size_t(row * s.r())], w.bb, &f.approx[std::size_t(row * s.N)]);
      }
      bool ok = true;
      int exact = 0, rows = 0;
      for (std::int64_t row = 0; row < s.heads() * s.N; ++row) {
        if (row % s.N == 0) continue;
        ++rows;
        exact += checkTopKRow(idx.data() + row * kept, &f.approx[std::size_t(row * s.N)], s.N, kept, 1e-4,
                              "coefficientKeep " + std::to_string(coefficientKeep) + " round " + std::to_string(round) +
                                  " row " + std::to_string(row), ok);
      }
      CHECK(ok);
      CHECK(exact * 10 >= rows * 8);
      // Rewrite Bb in place, through the tensor the op reads (a mutable access notes the write).
      w.bb = toDouble(randomVector(w.bb.size()));
      float* bb = in[7]->data();
      for (std::size_t i = 0; i < w.bb.size(); ++i) bb[i] = float(w.bb[i]);
    }
  }
}

// Exact ties: Bb rows repeated in groups make whole groups of approx entries bit-identical in
// float and in float64; the lower key index must win. Constant Bb makes every entry tie.
TEST(predictor_topk_breaks_ties_by_lower_index) {
  for (Dims s : {Dims{1, 3, 197, 16}, Dims{2, 1, 57, 64}, Dims{1, 1, 17, 16}}) {
    for (int groups : {1, 7}) {
      for (double rate : kKeepRates) {
        std::int64_t kept = keptFor(rate, s.N), r = s.r();
        auto q = randomVector(std::size_t(s.size())), k = randomVector(std::size_t(s.size()));
        Predictor w = randomPredictor(s);
        for (std::int64_t m = 0; m < s.N; ++m)
          for (std::int64_t j = 0; j < r; ++j) w.bb[std::size_t(m * r + j)] = w.bb[std::size_t((m % groups) * r + j)];
        Attrs attrs;
        attrs.set("keepRate", rate);
        auto idx = valuesOf(runOp("sparsifinerPredict", predictorInputs(s, q, k, w), attrs)[0]);
        PredictorRef f = predictorForward(s, toDouble(q), toDouble(k), w, 1.0 / std::sqrt(double(s.H)));
        bool ok = true;
        for (std::int64_t row = 0; row < s.heads() * s.N; ++row) {
          if (row % s.N == 0) continue;
          std::vector<int> order = referenceTopK(&f.approx[std::size_t(row * s.N)], s.N, kept);
          std::vector<int> want(order.begin(), order.begin() + kept);
          std::sort(want.begin(), want.end());
          std::vector<int> got(idx.begin() + row * kept, idx.begin() + (row + 1) * kept);
          ok = ok && got == want;
        }
        if (!ok) std::fprintf(stderr, "  %s groups=%d keep=%g: tie order differs\n", s.str().c_str(), groups, rate);
        CHECK(ok);
      }
    }
  }
}

// The coefficient top-k (attr coefficientKeep): C keeps its largest entries per row (zeros
// elsewhere) and approx = C' Bb^T picks the keys.
TEST(predictor_coefficient_topk_matches_float64_reference) {
  int exactRows = 0, rows = 0;
  for (Dims s : {Dims{1, 3, 197, 64}, Dims{2, 1, 257, 16}, Dims{1, 2, 97, 16}}) {
    for (std::int64_t coefficientKeep : {std::int64_t(1), std::int64_t(4), s.r() - 1, s.r()}) {
      const double rate = 0.25;
      std::int64_t kept = keptFor(rate, s.N), r = s.r();
      auto q = randomVector(std::size_t(s.size())), k = randomVector(std::size_t(s.size()));
      Predictor w = randomPredictor(s);
      Attrs attrs;
      attrs.set("keepRate", rate);
      attrs.set("coefficientKeep", double(coefficientKeep));
      auto out = runOp("sparsifinerPredict", predictorInputs(s, q, k, w), attrs);
      PredictorRef f = predictorForward(s, toDouble(q), toDouble(k), w, 1.0 / std::sqrt(double(s.H)));
      auto gotC = valuesOf(out[1]);
      // The reference C': the coefficientKeep largest of each row (ties to the lower index). Where
      // the kept-th and the next coefficient are closer than float rounding can tell apart, the
      // op's choice stands if it is a valid top-k of the float64 row within that margin.
      for (std::int64_t row = 0; row < s.heads() * s.N; ++row) {
        double* c = &f.C[std::size_t(row * r)];
        std::vector<int> order = referenceTopK(c, r, coefficientKeep);
        std::vector<bool> keep(std::size_t(r), false);
        for (std::int64_t t = 0; t < coefficientKeep; ++t) keep[std::size_t(order[std::size_t(t)])] = true;
        if (coefficientKeep < r) {
          const double margin = 1e-5, kth = c[order[std::size_t(coefficientKeep - 1)]];
          if (kth - c[order[std::size_t(coefficientKeep)]] <= margin) {
            std::vector<bool> chosen(std::size_t(r), false);
            std::int64_t count = 0;
            bool valid = true;
            for (std::int64_t j = 0; j < r; ++j) {
              chosen[std::size_t(j)] = gotC[std::size_t(row * r + j)] != 0.0f;
              count += chosen[std::size_t(j)];
              valid = valid && (chosen[std::size_t(j)] ? c[j] >= kth - margin : c[j] <= kth + margin);
            }
            if (valid && count == coefficientKeep) keep = chosen;
          }
        }
        for (std::int64_t j = 0; j < r; ++j)
          if (!keep[std::size_t(j)]) c[j] = 0.0;
        approxRowFrom(s, c, w.bb, &f.approx[std::size_t(row * s.N)]);
      }
      std::string where = s.str() + " coefficientKeep=" + std::to_string(coefficientKeep);
      CHECK(close(gotC, f.C, 2e-5, "C'", where));
      auto idx = valuesOf(out[0]);
      bool ok = true;
      for (std::int64_t row = 0; row < s.heads() * s.N; ++row) {
        if (row % s.N == 0) continue;
        ++rows;
        exactRows += checkTopKRow(idx.data() + row * kept, &f.approx[std::size_t(row * s.N)], s.N, kept, 1e-4,
                                  where + " row " + std::to_string(row), ok);
      }
      CHECK(ok);
    }
  }
  CHECK(exactRows * 10 >= rows * 8);
}

// The exact top-k against sorting, on rows built to be hard: many ties, all equal, signed zeros,
// infinities and NaN (ranked below everything), values sharing sign and exponent, every length
// around the vector width, and every keep from 1 to n on short rows. Long rows (from 256 keys
// the top-k brackets T from a strided sample, then interpolates) also get smooth, heavy-tailed,
// lumpy and sorted rows, and rows half of one value: the answer must not depend on
// the sample or on how well interpolation guesses.
TEST(topk_selection_matches_sorting_on_hard_rows) {
  const auto& kt = castling::cpu::sparsifinerKernels();
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  // Descending, NaN below everything (even -inf); -0 == +0 already.
  auto before = [](float a, float b) { return a == a && (b != b || a > b); };
  bool ok = true;
  int cases = 0;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (std::int64_t n : {1, 2, 3, 15, 16, 17, 31, 33, 100, 197, 255, 256, 257, 785, 1000, 3137}) {
    for (int kind = 0; kind < 12; ++kind) {
      std::vector<float> row(static_cast<std::size_t>(n));
      for (std::int64_t i = 0; i < n; ++i) {
        float u = uniform(rng());
        switch (kind) {
          case 0: row[std::size_t(i)] = 2.0f * u - 1.0f; break;                          // mixed signs
          case 1: row[std::size_t(i)] = float(int(u * 3.0f));  break;                     // many ties
          case 2: row[std::size_t(i)] = 0.5f; break;                                      // all equal
          case 3: row[std::size_t(i)] = 1.0f + u * 1e-3f; break;                          // one exponent
          case 4: row[std::size_t(i)] = (i % 2 ? -0.0f : 0.0f) + (u < 0.2f ? 1.0f : 0.0f); break;  // signed zeros
          case 6: row[std::size_t(i)] = normal(rng()); break;                                // smooth
          case 7: row[std::size_t(i)] = std::exp(6.0f * normal(rng())); break;               // heavy tail
          case 8: row[std::size_t(i)] = (u < 0.5f ? 0.0f : 100.0f) + 1e-3f * normal(rng()); break;  // two lumps
          case 9: row[std::size_t(i)] = float(i) * 1e-3f; break;                             // ascending
          case 10: row[std::size_t(i)] = -float(i) * 1e-3f; break;                           // descending
          case 11: row[std::size_t(i)] = i % 2 ? 2.0f * u - 1.0f : 0.25f; break;             // half tied
          default: {                                                                       // specials
            const float specials[] = {inf, -inf, nan, 0.0f, -1.0f, 1e-30f, -1e30f};
            row[std::size_t(i)] = u < 0.5f ? specials[int(u * 14.0f) % 7] : 2.0f * u - 1.0f;
          }
        }
      }
      std::vector<std::int64_t> keeps;
      if (n <= 33) {
        for (std::int64_t keep = 1; keep <= n; ++keep) keeps.push_back(keep);
      } else {
        keeps = {1, 2, n / 10 + 1, n / 4, n / 2, n - 1, n};
      }
      // got has a vector of guard slots past the row: the top-k writes exactly `keep` slots (the
      // predictor writes its output rows in place, one after another, from several threads).
      std::vector<float> scratch(static_cast<std::size_t>(kt.topKScratchFloats(n)) + 64), got(static_cast<std::size_t>(n + 16));
      std::vector<int> order(static_cast<std::size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return before(row[std::size_t(a)], row[std::size_t(b)]); });
      for (std::int64_t keep : keeps) {
        std::fill(got.begin(), got.end(), -2.0f);
        kt.selectTopK(row.data(), n, keep, got.data(), scratch.data());
        if (std::count(got.begin() + keep, got.end(), -2.0f) != std::ptrdiff_t(got.size()) - keep) {
          std::fprintf(stderr, "  n=%ld kind=%d keep=%ld: wrote past the kept slots\n", long(n), kind, long(keep));
          ok = false;
        }
        std::vector<int> want(order.begin(), order.begin() + keep);
        std::sort(want.begin(), want.end());
        ++cases;
        for (std::int64_t j = 0; j < keep; ++j) {
          if (got[std::size_t(j)] != float(want[std::size_t(j)])) {
            std::fprintf(stderr, "  n=%ld kind=%d keep=%ld: slot %ld is %g, expected %d\n", long(n), kind, long(keep),
                         long(j), double(got[std::size_t(j)]), want[std::size_t(j)]);
            ok = false;
            break;
          }
        }
      }
    }
  }
  CHECK(cases > 500);
  CHECK(ok);
}

// The fused top-k of a combination of rows must choose exactly what combineRows then selectTopK
// choose, ties included: on every length around the vector width and long rows, few and several
// rows combined, every keep route (all, few, radix, bracketed), basis rows of few distinct values
// (ties everywhere), rows that are -0, +-inf or NaN somewhere, and rows a few ulps apart (any
// other order of the additions rounds differently).
TEST(topk_of_combination_chooses_what_combine_then_topk_choose) {
  const auto& kt = castling::cpu::sparsifinerKernels();
  const float inf = std::numeric_limits<float>::infinity(), nan = std::numeric_limits<float>::quiet_NaN();
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  bool ok = true;
  int cases = 0;
  for (std::int64_t n : {1, 2, 15, 16, 17, 33, 100, 255, 256, 257, 785, 1000, 3137}) {
    const std::int64_t basisRows = 9;
    for (int kind = 0; kind < 4; ++kind) {
      std::vector<float> rows(static_cast<std::size_t>(basisRows * n));
      for (std::size_t i = 0; i < rows.size(); ++i) {
        float u = uniform(rng());
        if (kind == 0) rows[i] = 2.0f * u - 1.0f;                   // smooth
        else if (kind == 1) rows[i] = float(int(u * 3.0f)) - 1.0f;  // three values: ties
        else if (kind == 2) rows[i] = u < 0.05f ? (u < 0.02f ? inf : u < 0.04f ? -0.0f : nan) : 2.0f * u - 1.0f;  // specials
        else rows[i] = 1.0f + float(int(u * 8.0f)) * std::numeric_limits<float>::epsilon();  // a few ulps apart:
      }  // (kind 3: which entries tie, and their order, turn on the last bit of each sum's rounding)
      for (std::int64_t count : {1, 2, 3, 4, 5, 8}) {
        std::vector<std::int32_t> which(static_cast<std::size_t>(count));
        std::vector<float> coeff(static_cast<std::size_t>(count));
        for (std::int64_t t = 0; t < count; ++t) {
          which[std::size_t(t)] = std::int32_t((t * 5 + kind) % basisRows);  // distinct, not in order
          coeff[std::size_t(t)] = kind == 1 ? 0.5f : uniform(rng());        // equal weights: more ties
        }
        std::vector<float> row(static_cast<std::size_t>(n));
        kt.combineRows(coeff.data(), which.data(), count, rows.data(), n, row.data());
        std::vector<float> scratch(static_cast<std::size_t>(kt.topKScratchFloats(n)) + 64);
        std::vector<float> want(static_cast<std::size_t>(n)), got(static_cast<std::size_t>(n + 16));  // guard slots
        std::vector<std::int64_t> keeps = {1, 2, 8, 9, n / 10 + 1, n / 4, n / 2, n - 1, n};
        for (std::int64_t keep : keeps) {
          if (keep < 1 || keep > n) continue;
          kt.selectTopK(row.data(), n, keep, want.data(), scratch.data());
          std::fill(got.begin(), got.end(), -2.0f);
          kt.selectTopKOfCombination(coeff.data(), which.data(), count, rows.data(), n, keep, got.data(), scratch.data());
          ++cases;
          const bool untouchedPastKeep = std::count(got.begin() + keep, got.end(), -2.0f) == std::ptrdiff_t(got.size()) - keep;
          if (!std::equal(want.begin(), want.begin() + keep, got.begin()) || !untouchedPastKeep) {
            std::fprintf(stderr, "  n=%ld kind=%d count=%ld keep=%ld: fused top-k differs\n", long(n), kind, long(count), long(keep));
            ok = false;
          }
        }
      }
    }
  }
  CHECK(cases > 500);
  CHECK(ok);
}

TEST(predictor_threshold_mode_keeps_entries_above_threshold) {
  for (Dims s : {Dims{1, 3, 197, 16}, Dims{2, 1, 17, 64}}) {
    auto q = randomVector(std::size_t(s.size())), k = randomVector(std::size_t(s.size()));
    Predictor w = randomPredictor(s);
    PredictorRef f = predictorForward(s, toDouble(q), toDouble(k), w, 1.0 / std::sqrt(double(s.H)));
    for (double threshold : {0.0, 0.3, 10.0}) {  // 10: nothing passes, every row keeps its argmax
      Attrs attrs;
      attrs.set("mode", 1);
      attrs.set("threshold", threshold);
      auto out = runOp("sparsifinerPredict", predictorInputs(s, q, k, w), attrs);
      CHECK((out[0].shape() == Shape{s.B, s.H, s.N, s.N}));
      auto idx = valuesOf(out[0]);
      bool ok = true;
      for (std::int64_t row = 0; row < s.heads() * s.N; ++row) {
        const float* got = idx.data() + row * s.N;
        const double* ref = &f.approx[std::size_t(row * s.N)];
        if (row % s.N == 0) {
          for (std::int64_t j = 0; j < s.N; ++j) ok = ok && got[j] == -1.0f;
          continue;
        }
        std::vector<bool> chosen(std::size_t(s.N), false);
        std::int64_t count = 0;
        for (; count < s.N && got[count] >= 0; ++count) chosen[std::size_t(got[count])] = true;
        for (std::int64_t j = count; j < s.N; ++j) ok = ok && got[j] == -1.0f;
        std::int64_t above = 0;
        for (std::int64_t m = 0; m < s.N; ++m) above += ref[m] > threshold;
        if (above == 0) {  // nothing passes: the row keeps its argmax alone
          double best = ref[referenceTopK(ref, s.N, 1)[0]];
          if (best > threshold - 1e-4) continue;  // float may pass it
          // Its argmax, or a key within float rounding of it (a near tie may go either way).
          ok = ok && count == 1 && ref[int(got[0])] >= best - 1e-4;
          continue;
        }
        for (std::int64_t m = 0; m < s.N; ++m) {
          if (std::abs(ref[m] - threshold) < 1e-4) continue;  // float may go either way
          ok = ok && (chosen[std::size_t(m)] == (ref[m] > threshold));
        }
      }
      if (!ok) std::fprintf(stderr, "  %s threshold=%g: kept set differs\n", s.str().c_str(), threshold);
      CHECK(ok);
    }
  }
}

// ---- attention reconstruction ----

TEST(reconstruction_matches_float64_reference) {
  for (Dims s : kShapes) {
    auto q = randomVector(std::size_t(s.size()), 2.0f), k = randomVector(std::size_t(s.size()), 2.0f);
    Predictor w = randomPredictor(s);
    double scale = 1.0 / std::sqrt(double(s.H)), attnScale = 1.0 / std::sqrt(double(s.d));
    Vec lse = denseLse(s, toDouble(q), toDouble(k), attnScale);
    auto got = runReconstruction(s, q, k, w, lse, Attrs());
    ReconstructionRef want = reconstruction(s, toDouble(q), toDouble(k), w, lse, scale, attnScale);
    std::string where = s.str();
    CHECK(got.size() == 7);
    CHECK(close(valuesOf(got[0]), Vec{want.loss}, 1e-4, "loss", where));
    CHECK(close(valuesOf(got[1]), want.grad.wq, 5e-4, "dWq", where));
    CHECK(close(valuesOf(got[2]), want.grad.bq, 5e-4, "dbq", where));
    CHECK(close(valuesOf(got[3]), want.grad.wk, 5e-4, "dWk", where));
    CHECK(close(valuesOf(got[4]), want.grad.bk, 5e-4, "dbk", where));
    CHECK(close(valuesOf(got[5]), want.grad.p, 5e-4, "dP", where));
    CHECK(close(valuesOf(got[6]), want.grad.bb, 5e-4, "dBb", where));
    auto again = runReconstruction(s, q, k, w, lse, Attrs());
    for (int i = 0; i < 7; ++i) CHECK(sameBits(got[i], again[i]));
  }
  // The lse of the float op attentionSoftmax (the intended producer) and explicit scales.
  Dims s{1, 2, 40, 16};
  auto q = randomVector(std::size_t(s.size())), k = randomVector(std::size_t(s.size()));
  Predictor w = randomPredictor(s);
  Attrs attrs, attnAttrs;
  attrs.set("scale", 0.9);
  attrs.set("attnScale", 0.4);
  attnAttrs.set("scale", 0.4);
  Tensor lse = runOp("attentionSoftmax", {tensorOf(s.full(), q), tensorOf(s.full(), k), tensorOf(s.full(), q)}, attnAttrs)[1];
  auto in = predictorInputs(s, q, k, w);
  in.push_back(lse);
  auto got = runOp("sparsifinerReconstruction", in, attrs);
  ReconstructionRef want = reconstruction(s, toDouble(q), toDouble(k), w, denseLse(s, toDouble(q), toDouble(k), 0.4), 0.9, 0.4);
  CHECK(close(valuesOf(got[0]), Vec{want.loss}, 1e-4, "loss (attentionSoftmax lse)", s.str()));
  CHECK(close(valuesOf(got[6]), want.grad.bb, 5e-4, "dBb (attentionSoftmax lse)", s.str()));
}

TEST(reconstruction_reference_gradient_matches_finite_differences) {
  for (Dims s : {Dims{1, 2, 9, 4}, Dims{2, 1, 17, 2}}) {
    Vec q = toDouble(randomVector(std::size_t(s.size()), 2.0f)), k = toDouble(randomVector(std::size_t(s.size()), 2.0f));
    Predictor w = randomPredictor(s);
    double scale = 0.7, attnScale = 0.5;
    Vec lse = denseLse(s, q, k, attnScale);
    ReconstructionRef g = reconstruction(s, q, k, w, lse, scale, attnScale);
    auto loss = [&] { return reconstruction(s, q, k, w, lse, scale, attnScale, false).loss; };
    double worst = worstFiniteDifference({{&w.wq, &g.grad.wq}, {&w.bq, &g.grad.bq}, {&w.wk, &g.grad.wk},
                                          {&w.bk, &g.grad.bk}, {&w.p, &g.grad.p}, {&w.bb, &g.grad.bb}},
                                         loss, /*relative=*/true);
    if (worst > 1e-6) std::fprintf(stderr, "  %s: finite differences differ by %g\n", s.str().c_str(), worst);
    CHECK(worst <= 1e-6);
  }
}

// ---- errors ----

TEST(sparsifiner_ops_reject_bad_inputs) {
  Dims s{1, 2, 17, 8};
  auto q = randomVector(std::size_t(s.size())), k = randomVector(std::size_t(s.size()));
  Predictor w = randomPredictor(s);
  auto in = predictorInputs(s, q, k, w);
  Attrs none;
  auto predict = [&](std::vector<std::optional<Tensor>> inputs, const Attrs& attrs) {
    runOp("sparsifinerPredict", std::move(inputs), attrs);
  };
  {
    auto bad = in;
    bad[0] = bad[1] = Tensor::zeros({1, 2, 17, 7});
    CHECK(failsWith([&] { predict(bad, none); }, "expected an even d"));
    bad = in;
    bad[6] = Tensor::zeros({16, 2});
    CHECK(failsWith([&] { predict(bad, none); }, "the token count is fixed by the config: P has N=16, q has N=17"));
    bad = in;
    bad[7] = Tensor::zeros({17, 3});
    CHECK(failsWith([&] { predict(bad, none); }, "Bb has shape [17, 3], expected [17, 2]"));
    bad = in;
    bad[2] = Tensor::zeros({8, 8});
    CHECK(failsWith([&] { predict(bad, none); }, "Wq has shape [8, 8], expected [4, 8]"));
    bad = in;
    bad[5] = Tensor::zeros({8});
    CHECK(failsWith([&] { predict(bad, none); }, "bk has shape"));
    bad = in;
    bad[1] = Tensor::zeros({1, 2, 16, 8});
    CHECK(failsWith([&] { predict(bad, none); }, "k has shape"));
    bad = in;
    bad.pop_back();
    CHECK(failsWith([&] { predict(bad, none); }, "input 'Bb' is missing"));
  }
  for (double rate : {0.0, -0.5, 1.5}) {
    Attrs a;
    a.set("keepRate", rate);
    CHECK(failsWith([&] { predict(in, a); }, "keepRate"));
  }
  Attrs mode2, mode1;
  mode2.set("mode", 2);
  mode1.set("mode", 1);
  CHECK(failsWith([&] { predict(in, mode2); }, "attribute 'mode' is 2: expected an integer from 0 to 1"));
  Attrs tooManyCoefficients;
  tooManyCoefficients.set("coefficientKeep", 3);  // r = 2 at N = 17
  CHECK(failsWith([&] { predict(in, tooManyCoefficients); }, "attribute 'coefficientKeep' is 3: expected an integer from 0 to 2"));
  CHECK(failsWith([&] { predict(in, mode1); }, "threshold"));

  // Sparse attention's indices.
  Tensor tq = tensorOf(s.full(), q);
  auto idx = randomIndices(s, 4);
  auto sparse = [&](std::vector<float> values, Shape shape) {
    runOp("sparseAttention", {tq, tq, tq, tensorOf(shape, values)}, none);
  };
  Shape ishape{1, 2, 17, 4};
  sparse(idx, ishape);  // valid
  auto bad = idx;
  bad[3 * 4 + 1] = 17;
  bad[3 * 4 + 2] = bad[3 * 4 + 3] = -1;
  bad[3 * 4 + 0] = 0;
  CHECK(failsWith([&] { sparse(bad, ishape); }, "indices[0, 0, 3, 1] is 17, expected -1 (padding) or an integer key index in [0, 17)"));
  bad = idx;
  bad[5 * 4 + 0] = 2.5f;
  CHECK(failsWith([&] { sparse(bad, ishape); }, "indices[0, 0, 5, 0] is 2.5"));
  bad = idx;
  std::fill(bad.begin() + 4 * 4, bad.begin() + 5 * 4, -1.0f);
  bad[4 * 4 + 0] = 6;
  bad[4 * 4 + 2] = 6;  // a repeated key
  CHECK(failsWith([&] { sparse(bad, ishape); }, "indices[0, 0, 4, 2] is 6"));
  bad = idx;
  std::fill(bad.begin() + (17 + 2) * 4, bad.begin() + (17 + 3) * 4, -1.0f);
  CHECK(failsWith([&] { sparse(bad, ishape); }, "indices row [0, 1, 2] keeps no key"));
  // Rows without padding, long enough for whole vectors: a repeated key, a NaN, a key out of range.
  {
    Shape wide{1, 1, 40, 20};
    std::vector<float> full(std::size_t(40 * 20));
    for (std::int64_t row = 0; row < 40; ++row)
      for (std::int64_t j = 0; j < 20; ++j) full[std::size_t(row * 20 + j)] = float(j * 2);
    Tensor tw = Tensor::zeros({1, 1, 40, 8});
    auto wideSparse = [&](const std::vector<float>& values) { runOp("sparseAttention", {tw, tw, tw, tensorOf(wide, values)}, none); };
    wideSparse(full);  // valid
    auto badFull = full;
    badFull[7 * 20 + 17] = badFull[7 * 20 + 16];
    CHECK(failsWith([&] { wideSparse(badFull); }, "indices[0, 0, 7, 17] is 32, expected -1 (padding) or an integer key index in [0, 40) greater than"));
    badFull = full;
    badFull[9 * 20 + 5] = std::numeric_limits<float>::quiet_NaN();
    CHECK(failsWith([&] { wideSparse(badFull); }, "indices[0, 0, 9, 5] is nan"));
    badFull = full;
    badFull[3 * 20 + 19] = 40;
    CHECK(failsWith([&] { wideSparse(badFull); }, "indices[0, 0, 3, 19] is 40"));
  }
  bad = idx;
  std::fill(bad.begin(), bad.begin() + 4, 99.0f);  // row 0 is dense: its slots are never read
  sparse(bad, ishape);
  CHECK(failsWith([&] { sparse(std::vector<float>(2 * 17 * 18, 0.0f), {1, 2, 17, 18}); }, "indices has shape [1, 2, 17, 18]"));
  CHECK(failsWith([&] { sparse(idx, {2, 17, 8}); }, "indices has shape"));
  Tensor ti = tensorOf(ishape, idx);
  auto fwd = runOp("sparseAttention", {tq, tq, tq, ti}, none);
  CHECK(failsWith([&] { runOp("sparseAttentionBackward", {tq, tq, tq, ti, fwd[0], Tensor::zeros({1, 2, 16}), tq}, none); },
                  "lse has shape"));
  CHECK(failsWith([&] { runOp("sparseAttentionBackward", {tq, tq, tq, ti, fwd[0], fwd[1]}, none); }, "dy"));

  auto rec = in;
  rec.push_back(Tensor::zeros({1, 2, 16}));
  CHECK(failsWith([&] { runOp("sparsifinerReconstruction", rec, none); }, "lse has shape [1, 2, 16], expected [1, 2, 17]"));
}

int main() {
  cpu::registerCpuOps(OpRegistry::global());
  return runAll();
}
