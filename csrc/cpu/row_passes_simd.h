// Explicit-SIMD editions of the verification row passes of row_passes.h, written once for a
// lane backend V: cpu::Avx512 (16 lanes, simd512.h) or cpu::Avx2 (8 lanes, simd256.h).
//
// Same per-element math (the lane-generic functions of core/, instantiated with V::F), same
// chunking (kChunk lanes, staged in L1), same arg-max selection, so every key and every token
// equals the portable passes' and the CUDA kernel's; only the rounding of the row sums differs
// (order of additions, and the log-sum-exp's reference). What makes them faster than the
// auto-vectorised loops:
// - accumulators in registers, selects as single blend/mask instructions;
// - log-sum-exp in one unmasked pass per chunk against the running max (row_lse);
// - the next chunk of each row is prefetched while the current one is computed;
// - Philox words are made for a whole block of lanes (philox_simd.h) and transposed into lane
//   order in registers;
// - the races skip the logarithms of lanes that provably cannot win (core/verify_math.h
//   race_may_beat, gumbel_may_beat), and the fallback race over p (needed only when rounding
//   leaves the residual without mass) runs as a second pass in that rare case, as on CUDA.
#pragma once

#include "row_passes.h"
#include "simd256.h"
#include "simd512.h"

#if defined(DSPARK_SIMD512) || defined(DSPARK_SIMD256)

#include <algorithm>
#include <cstdint>

#include "../core/verify_math.h"
#include "philox_simd.h"

DSPARK_SIMD_WARNINGS_OFF  // simd_isa.h

namespace dspark {
namespace cpu {
namespace simd {

constexpr int64_t kBlockLanes = 4 * kPhiloxSimdGroups;  // lanes per Philox SIMD block
static_assert(kChunk % kBlockLanes == 0, "chunks must hold whole Philox SIMD blocks");

// Prefetch one cache line into L1. An asm statement, not _mm_prefetch: GCC 12 emitted no
// prefetch at all for some of these call sites (a row pointer read from a struct, a prefetch
// after an early return; seen with objdump), and a volatile asm cannot be left out.
inline void prefetch_line(const void* p) {
  asm volatile("prefetcht0 %0" : : "m"(*static_cast<const char*>(p)));
}

// Prefetch the part of the next chunk of `row` that corresponds to lanes [j, j+32) of this
// one (the hardware prefetcher alone leaves the exp-bound loops waiting on L3); callers call
// it every 32 lanes. One prefetch per 64-byte line, only for lanes inside the row.
template <typename scalar_t>
inline void prefetch_next(const scalar_t* row, int64_t c, int64_t j, int64_t vocab) {
  constexpr int64_t kLanesPerLine = 64 / static_cast<int64_t>(sizeof(scalar_t));
  for (int64_t k = 0; k < 32; k += kLanesPerLine) {
    const int64_t at = c + kChunk + j + k;
    if (at < vocab) prefetch_line(row + at);
  }
}

// Lanes [j, j + kLanes) of chunk row[c, c+n), lanes past n as -inf.
template <class V, typename scalar_t>
inline typename V::F chunk_vector(const scalar_t* row, int64_t c, int64_t n, int64_t j) {
  return (j + V::kLanes <= n) ? load_logits(row, c + j)
                              : load_logits_tail(row, c + j, static_cast<int>(n - j));
}

// Scaled, masked logits of row[c, c+n) into buf, -inf padded to whole vectors; returns the
// padded length and the chunk max through `m`.
template <class V, typename scalar_t>
inline int64_t stage_scaled(const scalar_t* row, int64_t c, int64_t n, typename V::F scale,
                            float* __restrict__ buf, float* m) {
  using F = typename V::F;
  F m0(kNegInf), m1(kNegInf);
  int64_t i = 0;
  for (; i < n; i += V::kLanes) {
    const F s = masked_scaled(chunk_vector<V>(row, c, n, i), scale);
    s.store(buf + i);
    if ((i / V::kLanes) % 2 == 0) {
      m0 = max_f(s, m0);
    } else {
      m1 = max_f(s, m1);
    }
  }
  *m = reduce_max(max_f(m0, m1));
  return i;
}

// (max, sum 2^(s - max)) of one chunk from its masked, staged logits (the general path).
template <class V, typename scalar_t>
inline SoftmaxStats chunk_stats_masked(const scalar_t* row, int64_t c, int64_t n, int64_t vocab,
                                       typename V::F scale, float* __restrict__ buf) {
  using F = typename V::F;
  float m;
  const int64_t padded = stage_scaled<V>(row, c, n, scale, buf, &m);
  if (m == kNegInf) return SoftmaxStats{kNegInf, 0.0f};  // fully masked chunk
  const F vm(m);
  F a0(0.0f), a1(0.0f);
  int64_t j = 0;
  for (; j + 2 * V::kLanes <= padded; j += 2 * V::kLanes) {
    if (j % 32 == 0) prefetch_next(row, c, j, vocab);
    a0 = a0 + exp2_le127_lanes(F::load(buf + j) - vm);  // <= 0; masked: 0
    a1 = a1 + exp2_le127_lanes(F::load(buf + j + V::kLanes) - vm);
  }
  if (j < padded) a0 = a0 + exp2_le127_lanes(F::load(buf + j) - vm);
  return SoftmaxStats{m, reduce_add(a0 + a1)};
}

// One pass over a chunk: sum of 2^(s - ref) against a reference `ref` (the running max of the
// earlier chunks) instead of the chunk's own max, so no max pass and no masking. Terms are
// exact as long as s - ref <= 127; past it (a +inf lane included) exp2_lanes saturates at
// 2^127, a NaN lane gives NaN, and a -inf lane (raw, or scaled past -FLT_MAX) adds 0, as a
// masked one does.
// Only a sum below 2^64 is taken (so the running sum cannot overflow however many chunks
// follow); any other sends the caller to the masked two-pass path, which merges the chunk's
// own statistics and so moves the reference up.
template <class V, typename scalar_t>
inline bool chunk_sum_against(const scalar_t* row, int64_t c, int64_t n, int64_t vocab,
                              typename V::F scale, float ref, float* sum) {
  using F = typename V::F;
  const int64_t padded = (n + V::kLanes - 1) / V::kLanes * V::kLanes;
  const F vref(ref);
  F a0(0.0f), a1(0.0f);
  int64_t j = 0;
  for (; j + 2 * V::kLanes <= padded; j += 2 * V::kLanes) {
    if (j % 32 == 0) prefetch_next(row, c, j, vocab);
    a0 = a0 + exp2_lanes(chunk_vector<V>(row, c, n, j) * scale - vref);
    a1 = a1 + exp2_lanes(chunk_vector<V>(row, c, n, j + V::kLanes) * scale - vref);
  }
  if (j < padded) a0 = a0 + exp2_lanes(chunk_vector<V>(row, c, n, j) * scale - vref);
  *sum = reduce_add(a0 + a1);
  return *sum < 0x1p64f;  // false for +inf and NaN too
}

// log2-sum-exp2 of the scaled row (as row_passes.h row_lse; the sum's rounding differs).
template <class V, typename scalar_t>
float row_lse(const scalar_t* row, int64_t vocab, float scale) {
  using F = typename V::F;
  alignas(64) float buf[kChunk];
  SoftmaxStats acc{kNegInf, 0.0f};
  const F vscale(scale);
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    float sum;
    if (acc.max != kNegInf && chunk_sum_against<V>(row, c, n, vocab, vscale, acc.max, &sum)) {
      acc.sum += sum;  // same reference
      continue;
    }
    const SoftmaxStats chunk = chunk_stats_masked<V>(row, c, n, vocab, vscale, buf);
    if (chunk.max != kNegInf) acc = stats2_merge(acc, chunk);
  }
  return stats2_lse(acc);
}

// Uniforms of one Philox SIMD block (kBlockLanes lanes from lane `begin`, a multiple of
// kBlockLanes) in lane order: out[q] holds lanes begin + q kLanes ... Lane 4g + j is word j
// of group g; the SoA words are converted, then transposed by the backend.
template <class V>
inline void block_uniforms(const RngStream& rng, int64_t begin,
                           typename V::F out[kBlockLanes / V::kLanes]) {
  alignas(64) uint32_t w[4][kPhiloxSimdGroups];
  philox_simd_block(rng, static_cast<uint32_t>(begin / 4), w[0], w[1], w[2], w[3]);
  V::words_to_lanes(w, out);
}

// An arg-max race over the row's lanes, chunk by chunk, with pruning. For the lanes
// [j, j + kLanes) of chunk c (n lanes) with uniforms u, key_of(c, n, j, u, bar) returns their
// keys, or -inf where the lanes provably cannot beat `bar`, a key some lane already reached
// (it may then skip their logarithms). Ties go to the lowest lane, as ArgMax::offer.
template <class V, class KeyOf>
int64_t pruned_race(int64_t vocab, const RngStream& rng, KeyOf&& key_of) {
  using F = typename V::F;
  constexpr int kVectors = static_cast<int>(kBlockLanes / V::kLanes);
  alignas(64) float keys[kChunk];
  ChunkArgMax best;
  float bar = kNegInf;  // the largest key reached so far
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    F chunk_max(kNegInf);
    for (int64_t b = 0; b < n; b += kBlockLanes) {
      F u[kVectors];
      block_uniforms<V>(rng, c + b, u);
      F reached(kNegInf);
      for (int q = 0; q < kVectors && b + V::kLanes * q < n; ++q) {
        const int64_t j = b + V::kLanes * q;
        const F key = key_of(c, n, j, u[q], bar);
        reached = max_f(key, reached);
        key.store(keys + j);
      }
      bar = dspark::max_f(reduce_max(reached), bar);
      chunk_max = max_f(reached, chunk_max);
    }
    best.offer_chunk_max(keys, c, reduce_max(chunk_max));
  }
  return best.index;
}

// Gumbel-max sample of the row's softmax (as row_passes.h row_sample). Lanes that provably
// cannot beat a key already reached (gumbel_may_beat) skip their two logarithms.
template <class V, typename scalar_t>
int64_t row_sample(const scalar_t* row, int64_t vocab, float scale, const RngStream& rng) {
  using F = typename V::F;
  const F vscale(scale);
  return pruned_race<V>(vocab, rng, [&](int64_t c, int64_t n, int64_t j, F u, float bar) {
    if (j % 32 == 0) prefetch_next(row, c, j, vocab);
    const F s = masked_scaled(chunk_vector<V>(row, c, n, j), vscale);
    if (!V::any(gumbel_may_beat(s, u, F(gumbel_bar(bar))))) return F(kNegInf);
    return gumbel2_key(s, neg_log2_of_uniform(u));
  });
}

// p and q of lanes [j, j + kLanes) of chunk c (q: draft row of logits, or of probabilities
// when d_probs, or the delta at `onehot`).
template <class V, typename scalar_t>
struct ResidualLanes {
  using F = typename V::F;
  const scalar_t* t_row;
  const scalar_t* d_row;  // nullptr: one-hot drafts
  bool d_probs;
  int64_t vocab;
  float scale_f, lse_t_f, lse_d_f;
  int64_t onehot;
  F scale = F(scale_f), lse_t = F(lse_t_f), lse_d = F(lse_d_f);
  bool t_finite = lse_t_f != kNegInf, d_finite = lse_d_f != kNegInf;

  static F row_prob(F s, F lse, bool finite) {
    return finite ? prob_finite_lse(s, lse) : prob(s, lse);
  }
  void probs(int64_t c, int64_t n, int64_t j, F* p, F* q) const {
    *p = row_prob(masked_scaled(chunk_vector<V>(t_row, c, n, j), scale), lse_t, t_finite);
    if (d_row != nullptr && d_probs) {
      *q = draft_prob(chunk_vector<V>(d_row, c, n, j));  // lanes past n: -inf, so 0
    } else if (d_row != nullptr) {
      *q = row_prob(masked_scaled(chunk_vector<V>(d_row, c, n, j), scale), lse_d, d_finite);
    } else {
      const int64_t at = onehot - (c + j);  // the one-hot lane within these, if any
      *q = V::unit_lane((at >= 0 && at < V::kLanes && at < n - j) ? static_cast<int>(at) : -1);
    }
  }
  void prefetch_rows(int64_t c, int64_t j) const {  // every 32 lanes
    if (j % 32 == 0) {
      prefetch_next(t_row, c, j, vocab);
      if (d_row != nullptr) prefetch_next(d_row, c, j, vocab);
    }
  }
};

// Z = sum_x max(w p(x) - q(x), 0) (as row_passes.h row_residual_mass).
template <class V, typename scalar_t>
float row_residual_mass(const scalar_t* t_row, const scalar_t* d_row, bool d_probs,
                        int64_t vocab, float scale, float w, float lse_t, float lse_d,
                        int64_t onehot) {
  using F = typename V::F;
  const ResidualLanes<V, scalar_t> lanes{t_row, d_row, d_probs, vocab, scale, lse_t, lse_d,
                                         onehot};
  const F vw(w);
  float z = 0.0f;
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    F acc(0.0f);
    for (int64_t j = 0; j < n; j += V::kLanes) {
      lanes.prefetch_rows(c, j);
      F p, q;
      lanes.probs(c, n, j, &p, &q);
      acc = acc + residual_weight(vw, p, q);
    }
    z += reduce_add(acc);
  }
  return z;
}

// Exponential race over max(w p - q, 0) (kOverP: over p, the fallback); -1 when no lane has
// weight. Lanes that provably cannot beat a key already reached (race_may_beat) skip their
// logarithm and division, which with a peaked target is nearly all of them; the winner is
// the one of the full race.
template <class V, typename scalar_t, bool kOverP>
int64_t race(const ResidualLanes<V, scalar_t>& lanes, float w, const RngStream& rng) {
  using F = typename V::F;
  const F vw(w);
  return pruned_race<V>(lanes.vocab, rng, [&](int64_t c, int64_t n, int64_t j, F u, float bar) {
    lanes.prefetch_rows(c, j);
    F p, q;
    lanes.probs(c, n, j, &p, &q);
    const F weight = kOverP ? p : residual_weight(vw, p, q);
    if (!V::any(race_may_beat(weight, u, F(bar)))) return F(kNegInf);
    return race_key(weight, inv_neg_log2_of_uniform(u));
  });
}

// As row_passes.h row_sample_residual: the residual race, and the race over p (same E per
// lane) only when the residual has no mass.
template <class V, typename scalar_t>
int64_t row_sample_residual(const scalar_t* t_row, const scalar_t* d_row, bool d_probs,
                            int64_t vocab, float scale, float w, float lse_t, float lse_d,
                            int64_t onehot, const RngStream& rng) {
  const ResidualLanes<V, scalar_t> lanes{t_row, d_row, d_probs, vocab, scale, lse_t, lse_d,
                                         onehot};
  const int64_t y = race<V, scalar_t, false>(lanes, w, rng);
  return y >= 0 ? y : race<V, scalar_t, true>(lanes, w, rng);
}

// The passes with the lane backend fixed, as the CPU executor and the tests use them.
template <class V>
struct Passes {
  template <typename scalar_t>
  static float row_lse(const scalar_t* row, int64_t vocab, float scale) {
    return simd::row_lse<V>(row, vocab, scale);
  }
  template <typename scalar_t>
  static int64_t row_sample(const scalar_t* row, int64_t vocab, float scale,
                            const RngStream& rng) {
    return simd::row_sample<V>(row, vocab, scale, rng);
  }
  template <typename scalar_t>
  static float row_residual_mass(const scalar_t* t_row, const scalar_t* d_row, bool d_probs,
                                 int64_t vocab, float scale, float w, float lse_t, float lse_d,
                                 int64_t onehot) {
    return simd::row_residual_mass<V>(t_row, d_row, d_probs, vocab, scale, w, lse_t, lse_d,
                                      onehot);
  }
  template <typename scalar_t>
  static int64_t row_sample_residual(const scalar_t* t_row, const scalar_t* d_row, bool d_probs,
                                     int64_t vocab, float scale, float w, float lse_t,
                                     float lse_d, int64_t onehot, const RngStream& rng) {
    return simd::row_sample_residual<V>(t_row, d_row, d_probs, vocab, scale, w, lse_t, lse_d,
                                        onehot, rng);
  }
};

}  // namespace simd
}  // namespace cpu
}  // namespace dspark

DSPARK_SIMD_WARNINGS_ON

#endif  // DSPARK_SIMD512 || DSPARK_SIMD256
