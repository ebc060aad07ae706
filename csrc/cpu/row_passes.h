// Vectorisable CPU passes over one vocabulary row: the reductions the verification
// algorithm (core/verify_row.h) asks its executor for.
//
// Each pass walks the row once, in chunks that stay in L1, with kLanes independent
// accumulators per chunk: GCC turns the fixed-width lane loops into SIMD code (AVX2/AVX-512
// when the build enables them) without -ffast-math, because no floating-point reduction is
// reassociated except by our own, fixed, lane order. Per-element math comes from core/.
#pragma once

#include <algorithm>
#include <cstdint>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../core/fastmath.h"
#include "../core/philox.h"
#include "../core/verify_math.h"

namespace dspark {
namespace cpu {

constexpr int kLanes = 16;
constexpr int64_t kChunk = 1024;  // elements per chunk; a multiple of kLanes and of 4

inline float to_float(float x) { return x; }
inline float to_float(c10::BFloat16 x) { return bits_float(static_cast<uint32_t>(x.x) << 16); }
inline float to_float(c10::Half x) { return static_cast<float>(x); }

// Scaled, masked logits of row[begin, begin+n) into out (n <= kChunk).
template <typename scalar_t>
inline void load_scaled(const scalar_t* __restrict__ row, int64_t begin, int64_t n, float inv_t,
                        float* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) out[i] = masked_scaled(to_float(row[begin + i]), inv_t);
}

// E = -log u (or 1/E with `reciprocal`) for vocabulary lanes [begin, begin+n) of `rng`;
// begin is a multiple of 4. Philox words are made four lanes at a time in SoA form so the
// rounds vectorise across groups.
inline void fill_neg_log_uniform(const RngStream& rng, int64_t begin, int64_t n,
                                 float* __restrict__ out, bool reciprocal) {
  constexpr int kGroups = kChunk / 4;
  uint32_t w0[kGroups], w1[kGroups], w2[kGroups], w3[kGroups];
  const int64_t groups = (n + 3) / 4;
  const uint32_t g0 = static_cast<uint32_t>(begin / 4);
  for (int64_t g = 0; g < groups; ++g) {
    const Philox4x32Out o = rng.words(g0 + static_cast<uint32_t>(g));
    w0[g] = o.v[0];
    w1[g] = o.v[1];
    w2[g] = o.v[2];
    w3[g] = o.v[3];
  }
  float e0[kGroups], e1[kGroups], e2[kGroups], e3[kGroups];
  if (reciprocal) {
    for (int64_t g = 0; g < groups; ++g) {
      e0[g] = inv_neg_log_uniform(w0[g]);
      e1[g] = inv_neg_log_uniform(w1[g]);
      e2[g] = inv_neg_log_uniform(w2[g]);
      e3[g] = inv_neg_log_uniform(w3[g]);
    }
  } else {
    for (int64_t g = 0; g < groups; ++g) {
      e0[g] = neg_log_uniform(w0[g]);
      e1[g] = neg_log_uniform(w1[g]);
      e2[g] = neg_log_uniform(w2[g]);
      e3[g] = neg_log_uniform(w3[g]);
    }
  }
  for (int64_t g = 0; g < groups; ++g) {
    out[4 * g] = e0[g];
    out[4 * g + 1] = e1[g];
    out[4 * g + 2] = e2[g];
    out[4 * g + 3] = e3[g];
  }
}

// Lane-parallel arg-max over a chunk of keys; indices are global vocabulary ids.
struct LaneArgMax {
  float key[kLanes];
  int32_t idx[kLanes];

  LaneArgMax() {
    for (int l = 0; l < kLanes; ++l) {
      key[l] = kNegInf;
      idx[l] = -1;
    }
  }
  // Keys of consecutive ids base..base+n-1; within a lane ids only grow, so strict '>'
  // keeps the lowest id on ties.
  void offer_chunk(const float* __restrict__ keys, int64_t n, int64_t base) {
    const int64_t full = n - n % kLanes;
    for (int64_t i = 0; i < full; i += kLanes) {
      for (int l = 0; l < kLanes; ++l) {
        const float k = keys[i + l];
        const bool gt = k > key[l];
        key[l] = gt ? k : key[l];
        idx[l] = gt ? static_cast<int32_t>(base + i + l) : idx[l];
      }
    }
    for (int64_t i = full; i < n; ++i) {
      const int l = static_cast<int>(i - full);
      if (keys[i] > key[l]) {
        key[l] = keys[i];
        idx[l] = static_cast<int32_t>(base + i);
      }
    }
  }
  ArgMax reduce() const {
    ArgMax best = ArgMax::empty();
    for (int l = 0; l < kLanes; ++l) best.offer(key[l], idx[l]);
    return best;
  }
};

inline float lanes_max(const float* __restrict__ x, int64_t n) {
  float m[kLanes];
  for (int l = 0; l < kLanes; ++l) m[l] = kNegInf;
  const int64_t full = n - n % kLanes;
  for (int64_t i = 0; i < full; i += kLanes)
    for (int l = 0; l < kLanes; ++l) m[l] = max_f(x[i + l], m[l]);
  for (int64_t i = full; i < n; ++i) m[0] = max_f(x[i], m[0]);
  float r = kNegInf;
  for (int l = 0; l < kLanes; ++l) r = max_f(m[l], r);
  return r;
}

inline float lanes_sum_exp(const float* __restrict__ x, int64_t n, float shift) {
  float s[kLanes] = {};
  const int64_t full = n - n % kLanes;
  for (int64_t i = 0; i < full; i += kLanes)
    for (int l = 0; l < kLanes; ++l) s[l] += exp_f(x[i + l] - shift);
  for (int64_t i = full; i < n; ++i) s[0] += exp_f(x[i] - shift);
  float r = 0.0f;
  for (int l = 0; l < kLanes; ++l) r += s[l];
  return r;
}

// log-sum-exp of the scaled row: one pass over memory, two over each L1-resident chunk.
template <typename scalar_t>
float row_lse(const scalar_t* row, int64_t vocab, float inv_t) {
  alignas(64) float buf[kChunk];
  SoftmaxStats acc{kNegInf, 0.0f};
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    load_scaled(row, c, n, inv_t, buf);
    const float m = lanes_max(buf, n);
    if (m == kNegInf) continue;  // fully masked chunk
    acc = stats_merge(acc, SoftmaxStats{m, lanes_sum_exp(buf, n, m)});
  }
  return stats_lse(acc);
}

// Greedy arg-max of the raw (masked) logits; -1 when every logit is masked.
template <typename scalar_t>
int64_t row_argmax(const scalar_t* row, int64_t vocab) {
  alignas(64) float buf[kChunk];
  LaneArgMax best;
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    load_scaled(row, c, n, 1.0f, buf);
    best.offer_chunk(buf, n, c);
  }
  return best.reduce().index;
}

// Gumbel-max sample of softmax(row * inv_t).
template <typename scalar_t>
int64_t row_sample(const scalar_t* row, int64_t vocab, float inv_t, const RngStream& rng) {
  alignas(64) float buf[kChunk];
  alignas(64) float e[kChunk];
  LaneArgMax best;
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    load_scaled(row, c, n, inv_t, buf);
    fill_neg_log_uniform(rng, c, n, e, /*reciprocal=*/false);
    for (int64_t i = 0; i < n; ++i) buf[i] = gumbel_key(buf[i], e[i]);
    best.offer_chunk(buf, n, c);
  }
  return best.reduce().index;
}

// Probabilities p (target) and q (draft, or the one-hot delta at `onehot`) of a chunk.
template <typename scalar_t>
inline void chunk_probs(const scalar_t* t_row, const scalar_t* d_row, int64_t c, int64_t n,
                        float inv_t, float lse_t, float lse_d, int64_t onehot,
                        float* __restrict__ p, float* __restrict__ q) {
  load_scaled(t_row, c, n, inv_t, p);
  for (int64_t i = 0; i < n; ++i) p[i] = prob(p[i], lse_t);
  if (d_row != nullptr) {
    load_scaled(d_row, c, n, inv_t, q);
    for (int64_t i = 0; i < n; ++i) q[i] = prob(q[i], lse_d);
  } else {
    for (int64_t i = 0; i < n; ++i) q[i] = (c + i == onehot) ? 1.0f : 0.0f;
  }
}

// Z = sum_x max(w p(x) - q(x), 0).
template <typename scalar_t>
float row_residual_mass(const scalar_t* t_row, const scalar_t* d_row, int64_t vocab,
                        float inv_t, float w, float lse_t, float lse_d, int64_t onehot) {
  alignas(64) float p[kChunk];
  alignas(64) float q[kChunk];
  float s[kLanes] = {};
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    chunk_probs(t_row, d_row, c, n, inv_t, lse_t, lse_d, onehot, p, q);
    const int64_t full = n - n % kLanes;
    for (int64_t i = 0; i < full; i += kLanes)
      for (int l = 0; l < kLanes; ++l) s[l] += residual_weight(w, p[i + l], q[i + l]);
    for (int64_t i = full; i < n; ++i) s[0] += residual_weight(w, p[i], q[i]);
  }
  float z = 0.0f;
  for (int l = 0; l < kLanes; ++l) z += s[l];
  return z;
}

// Exponential race over max(w p - q, 0); falls back to a sample of p (same race, weights p)
// when the residual has no mass; -1 only when the target row is fully masked.
template <typename scalar_t>
int64_t row_sample_residual(const scalar_t* t_row, const scalar_t* d_row, int64_t vocab,
                            float inv_t, float w, float lse_t, float lse_d, int64_t onehot,
                            const RngStream& rng) {
  alignas(64) float p[kChunk];
  alignas(64) float q[kChunk];
  alignas(64) float e[kChunk];
  LaneArgMax best_res, best_p;
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    chunk_probs(t_row, d_row, c, n, inv_t, lse_t, lse_d, onehot, p, q);
    fill_neg_log_uniform(rng, c, n, e, /*reciprocal=*/true);
    for (int64_t i = 0; i < n; ++i) {
      const float rw = residual_weight(w, p[i], q[i]);
      q[i] = race_key(rw, e[i]);
      p[i] = race_key(p[i], e[i]);
    }
    best_res.offer_chunk(q, n, c);
    best_p.offer_chunk(p, n, c);
  }
  const ArgMax r = best_res.reduce();
  return r.index >= 0 ? r.index : best_p.reduce().index;
}

}  // namespace cpu
}  // namespace dspark
