// Vectorisable CPU passes over one vocabulary row: the reductions the verification
// algorithm (core/verify_row.h) asks its executor for.
//
// Each pass walks the row once from memory, in chunks that stay in L1. The element loops are
// `omp simd` loops (built with -fopenmp): the compiler vectorises them, reductions included,
// for the instruction set the build enables (AVX2 / AVX-512), without -ffast-math. A sum's
// lane order therefore depends on the vector width; every other value (keys, probabilities,
// arg-maxes) is computed element by element with the shared functions of core/.
#pragma once

#include <algorithm>
#include <cstdint>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../core/fastmath.h"
#include "../core/philox.h"
#include "../core/verify_math.h"
#include "philox_simd.h"

namespace dspark {
namespace cpu {

constexpr int64_t kChunk = 1024;  // elements per chunk: a multiple of 4 (one Philox call)

inline float to_float(float x) { return x; }
inline float to_float(c10::BFloat16 x) { return bits_float(static_cast<uint32_t>(x.x) << 16); }
inline float to_float(c10::Half x) { return static_cast<float>(x); }

// Scaled, masked logits of row[begin, begin+n) into out (n <= kChunk).
template <typename scalar_t>
inline void load_scaled(const scalar_t* __restrict__ row, int64_t begin, int64_t n, float scale,
                        float* __restrict__ out) {
  for (int64_t i = 0; i < n; ++i) out[i] = masked_scaled(to_float(row[begin + i]), scale);
}

// E = -log u (or 1/E with `reciprocal`) for vocabulary lanes [begin, begin+n) of `rng`;
// begin is a multiple of 4. Philox words are made four lanes at a time, in SoA form, many
// groups per SIMD block (philox_simd.h). kBase2: E' = -log2 u instead (verification).
template <bool kBase2>
inline void fill_neg_log_uniform_base(const RngStream& rng, int64_t begin, int64_t n,
                                      float* __restrict__ out, bool reciprocal) {
  constexpr int kGroups = kChunk / 4;
  uint32_t w[4][kGroups];
  const int64_t groups = (n + 3) / 4;
  const uint32_t g0 = static_cast<uint32_t>(begin / 4);
  philox_fill(rng, g0, groups, w[0], w[1], w[2], w[3]);
  float e[4][kGroups];
  for (int j = 0; j < 4; ++j) {
    if (reciprocal) {
      for (int64_t g = 0; g < groups; ++g) {
        e[j][g] = kBase2 ? inv_neg_log2_uniform(w[j][g]) : inv_neg_log_uniform(w[j][g]);
      }
    } else {
      for (int64_t g = 0; g < groups; ++g) {
        e[j][g] = kBase2 ? neg_log2_uniform(w[j][g]) : neg_log_uniform(w[j][g]);
      }
    }
  }
  for (int64_t g = 0; g < groups; ++g) {
    for (int j = 0; j < 4; ++j) out[4 * g + j] = e[j][g];
  }
}

inline void fill_neg_log_uniform(const RngStream& rng, int64_t begin, int64_t n,
                                 float* __restrict__ out, bool reciprocal) {
  fill_neg_log_uniform_base<false>(rng, begin, n, out, reciprocal);
}
inline void fill_neg_log2_uniform(const RngStream& rng, int64_t begin, int64_t n,
                                  float* __restrict__ out, bool reciprocal) {
  fill_neg_log_uniform_base<true>(rng, begin, n, out, reciprocal);
}

// Arg-max over consecutive chunks of keys, ties to the lowest index: per chunk a SIMD max,
// then (only when it beats the running best) a scan for its first occurrence. Max is exact,
// so this is the same answer as a sequential scan; -inf keys are never taken.
struct ChunkArgMax {
  float key = kNegInf;
  int64_t index = -1;

  void offer_chunk(const float* __restrict__ keys, int64_t n, int64_t base) {
    float m = kNegInf;
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; ++i) m = max_f(keys[i], m);
    offer_chunk_max(keys, base, m);
  }
  // The same when the caller already knows the chunk's max key m.
  void offer_chunk_max(const float* __restrict__ keys, int64_t base, float m) {
    if (m > key) {  // strict: an equal key in a later chunk has a larger index
      int64_t i = 0;
      while (keys[i] != m) ++i;
      key = m;
      index = base + i;
    }
  }
};

// Greedy arg-max of the raw (masked) logits; -1 when every logit is masked.
template <typename scalar_t>
int64_t row_argmax(const scalar_t* row, int64_t vocab) {
  alignas(64) float buf[kChunk];
  ChunkArgMax best;
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    load_scaled(row, c, n, 1.0f, buf);
    best.offer_chunk(buf, n, c);
  }
  return best.index;
}

// The verification passes in portable form: omp-simd loops that the compiler vectorises for
// whatever instruction set the build enables. AVX-512 and AVX2 builds use row_passes_simd.h
// instead, which computes the same keys and tokens (tests/cpp checks the two agree).
namespace generic {

// log2-sum-exp2 of the scaled row: one pass over memory, two over each L1-resident chunk.
template <typename scalar_t>
float row_lse(const scalar_t* row, int64_t vocab, float scale) {
  alignas(64) float buf[kChunk];
  SoftmaxStats acc{kNegInf, 0.0f};
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    float m = kNegInf;
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; ++i) {
      const float s = masked_scaled(to_float(row[c + i]), scale);
      buf[i] = s;
      m = max_f(s, m);
    }
    if (m == kNegInf) continue;  // fully masked chunk
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t i = 0; i < n; ++i) sum += exp2_le127_lanes(buf[i] - m);  // <= 0
    acc = stats2_merge(acc, SoftmaxStats{m, sum});
  }
  return stats2_lse(acc);
}

// Gumbel-max sample of the row's softmax (scaled logits in log2 units).
template <typename scalar_t>
int64_t row_sample(const scalar_t* row, int64_t vocab, float scale, const RngStream& rng) {
  alignas(64) float buf[kChunk];
  alignas(64) float e[kChunk];
  ChunkArgMax best;
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    fill_neg_log2_uniform(rng, c, n, e, /*reciprocal=*/false);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) buf[i] = gumbel2_key(masked_scaled(to_float(row[c + i]), scale), e[i]);
    best.offer_chunk(buf, n, c);
  }
  return best.index;
}

// Probabilities p (target) and q (draft, or the one-hot delta at `onehot`) of a chunk. The
// draft row holds logits, or q itself when d_probs (core/verify_math.h draft_prob).
template <typename scalar_t>
inline void chunk_probs(const scalar_t* t_row, const scalar_t* d_row, bool d_probs, int64_t c,
                        int64_t n, float scale, float lse_t, float lse_d, int64_t onehot,
                        float* __restrict__ p, float* __restrict__ q) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) p[i] = prob(masked_scaled(to_float(t_row[c + i]), scale), lse_t);
  if (d_row != nullptr && d_probs) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) q[i] = draft_prob(to_float(d_row[c + i]));
  } else if (d_row != nullptr) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) q[i] = prob(masked_scaled(to_float(d_row[c + i]), scale), lse_d);
  } else {
    for (int64_t i = 0; i < n; ++i) q[i] = (c + i == onehot) ? 1.0f : 0.0f;
  }
}

// Z = sum_x max(w p(x) - q(x), 0).
template <typename scalar_t>
float row_residual_mass(const scalar_t* t_row, const scalar_t* d_row, bool d_probs,
                        int64_t vocab, float scale, float w, float lse_t, float lse_d,
                        int64_t onehot) {
  alignas(64) float p[kChunk];
  alignas(64) float q[kChunk];
  float z = 0.0f;
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    chunk_probs(t_row, d_row, d_probs, c, n, scale, lse_t, lse_d, onehot, p, q);
#pragma omp simd reduction(+ : z)
    for (int64_t i = 0; i < n; ++i) z += residual_weight(w, p[i], q[i]);
  }
  return z;
}

// Exponential race over max(w p - q, 0); falls back to a sample of p (same race, weights p)
// when the residual has no mass; -1 only when the target row is fully masked.
template <typename scalar_t>
int64_t row_sample_residual(const scalar_t* t_row, const scalar_t* d_row, bool d_probs,
                            int64_t vocab, float scale, float w, float lse_t, float lse_d,
                            int64_t onehot, const RngStream& rng) {
  alignas(64) float p[kChunk];
  alignas(64) float q[kChunk];
  alignas(64) float e[kChunk];
  ChunkArgMax best_res, best_p;
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    chunk_probs(t_row, d_row, d_probs, c, n, scale, lse_t, lse_d, onehot, p, q);
    fill_neg_log2_uniform(rng, c, n, e, /*reciprocal=*/true);
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
      const float rw = residual_weight(w, p[i], q[i]);
      q[i] = race_key(rw, e[i]);
      p[i] = race_key(p[i], e[i]);
    }
    best_res.offer_chunk(q, n, c);
    best_p.offer_chunk(p, n, c);
  }
  return best_res.index >= 0 ? best_res.index : best_p.index;
}

// The portable passes under the interface of row_passes_simd.h's simd::Passes.
struct Passes {
  template <typename scalar_t>
  static float row_lse(const scalar_t* row, int64_t vocab, float scale) {
    return generic::row_lse(row, vocab, scale);
  }
  template <typename scalar_t>
  static int64_t row_sample(const scalar_t* row, int64_t vocab, float scale,
                            const RngStream& rng) {
    return generic::row_sample(row, vocab, scale, rng);
  }
  template <typename scalar_t>
  static float row_residual_mass(const scalar_t* t_row, const scalar_t* d_row, bool d_probs,
                                 int64_t vocab, float scale, float w, float lse_t, float lse_d,
                                 int64_t onehot) {
    return generic::row_residual_mass(t_row, d_row, d_probs, vocab, scale, w, lse_t, lse_d,
                                      onehot);
  }
  template <typename scalar_t>
  static int64_t row_sample_residual(const scalar_t* t_row, const scalar_t* d_row, bool d_probs,
                                     int64_t vocab, float scale, float w, float lse_t,
                                     float lse_d, int64_t onehot, const RngStream& rng) {
    return generic::row_sample_residual(t_row, d_row, d_probs, vocab, scale, w, lse_t, lse_d,
                                        onehot, rng);
  }
};

}  // namespace generic
}  // namespace cpu
}  // namespace dspark
