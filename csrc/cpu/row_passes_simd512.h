// AVX-512 editions of the verification row passes of row_passes.h, 16 lanes at a time.
//
// Same per-element math (the lane-generic functions of core/, instantiated with F16), same
// chunking (kChunk lanes, a multiple of 64, staged in L1), same arg-max selection, so every
// key and every token equals the generic passes' and the CUDA kernel's; only the order of the
// float additions in the row sums differs (two 16-lane accumulators), as it already does
// between vector widths. What makes them faster than the auto-vectorised loops:
// - accumulators in registers, selects as single blend/mask instructions;
// - the next chunk of each row is prefetched while the current one is computed (the rows
//   stream from L3 or DRAM; the passes are otherwise compute bound);
// - the residual race keeps only the residual key; the fallback race over p (needed only when
//   rounding leaves the residual without mass) runs as a second pass in that rare case, as on
//   CUDA;
// - Philox words are turned into uniforms sixteen groups at a time and transposed into lane
//   order in registers;
// - the races skip the logarithms of lanes that provably cannot win (core/verify_math.h
//   race_may_beat, gumbel_may_beat).
#pragma once

#include "row_passes.h"
#include "simd512.h"

#if defined(DSPARK_SIMD512)

#include <algorithm>
#include <cstdint>

#include "../core/verify_math.h"
#include "philox_simd.h"

// The GCC 12 intrinsic false positive of simd512.h also fires where these inline them.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace dspark {
namespace cpu {
namespace simd512 {

constexpr int64_t kBlockLanes = 4 * kPhiloxSimdGroups;  // lanes per Philox SIMD block
constexpr int kBlockVectors = static_cast<int>(kBlockLanes / 16);  // 16-lane vectors in one
static_assert(kChunk % kBlockLanes == 0, "chunks must hold whole Philox SIMD blocks");

// Prefetch the part of the next chunk of `row` that corresponds to lanes [j, j+32) of this
// one (the hardware prefetcher alone leaves the exp-bound loops waiting on L3).
template <typename scalar_t>
inline void prefetch_next(const scalar_t* row, int64_t c, int64_t j, int64_t vocab) {
  const int64_t at = c + kChunk + j;
  if (at >= vocab) return;
  const char* p = reinterpret_cast<const char*>(row + at);
  _mm_prefetch(p, _MM_HINT_T0);
  if (sizeof(scalar_t) == 4) _mm_prefetch(p + 64, _MM_HINT_T0);
}

// Scaled, masked logits of row[c, c+n) into buf, -inf padded to a multiple of 16 lanes;
// returns the padded length and the chunk max through `m`.
template <typename scalar_t>
inline int64_t stage_scaled(const scalar_t* row, int64_t c, int64_t n, F16 scale,
                            float* __restrict__ buf, float* m) {
  F16 m0(kNegInf), m1(kNegInf);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    const F16 s0 = masked_scaled(load_logits(row, c + i), scale);
    const F16 s1 = masked_scaled(load_logits(row, c + i + 16), scale);
    s0.store(buf + i);
    s1.store(buf + i + 16);
    m0 = max_f(s0, m0);
    m1 = max_f(s1, m1);
  }
  for (; i + 16 <= n; i += 16) {
    const F16 s0 = masked_scaled(load_logits(row, c + i), scale);
    s0.store(buf + i);
    m0 = max_f(s0, m0);
  }
  if (i < n) {
    const F16 s0 = masked_scaled(load_logits_tail(row, c + i, static_cast<int>(n - i)), scale);
    s0.store(buf + i);
    m0 = max_f(s0, m0);
    i += 16;
  }
  *m = reduce_max(max_f(m0, m1));
  return i;
}

// Lanes [j, j+16) of chunk row[c, c+n), lanes past n as -inf.
template <typename scalar_t>
inline F16 chunk_vector(const scalar_t* row, int64_t c, int64_t n, int64_t j) {
  return (j + 16 <= n) ? load_logits(row, c + j)
                       : load_logits_tail(row, c + j, static_cast<int>(n - j));
}

// (max, sum 2^(s - max)) of one chunk from its masked, staged logits (the general path).
template <typename scalar_t>
inline SoftmaxStats chunk_stats_masked(const scalar_t* row, int64_t c, int64_t n, int64_t vocab,
                                       F16 scale, float* __restrict__ buf) {
  float m;
  const int64_t padded = stage_scaled(row, c, n, scale, buf, &m);
  if (m == kNegInf) return SoftmaxStats{kNegInf, 0.0f};  // fully masked chunk
  const F16 vm(m);
  F16 a0(0.0f), a1(0.0f);
  int64_t j = 0;
  for (; j + 32 <= padded; j += 32) {
    prefetch_next(row, c, j, vocab);
    a0 = a0 + exp2_le127_lanes(F16::load(buf + j) - vm);  // <= 0; masked: 0
    a1 = a1 + exp2_le127_lanes(F16::load(buf + j + 16) - vm);
  }
  if (j < padded) a0 = a0 + exp2_le127_lanes(F16::load(buf + j) - vm);
  return SoftmaxStats{m, reduce_add(a0 + a1)};
}

// One pass over a chunk: sum of 2^(s - ref) against a reference `ref` (the running max of the
// earlier chunks) instead of the chunk's own max, so no max pass. Terms are exact as long as
// s - ref < 128; beyond that vscalefps overflows to +inf, and a NaN lane gives NaN. Only a sum
// below 2^64 is taken (so the running sum cannot overflow however many chunks follow); any
// other sends the caller to the two-pass paths, which merge the chunk's own statistics and so
// move the reference up. A masked -inf lane adds 0.
template <typename scalar_t>
inline bool chunk_sum_against(const scalar_t* row, int64_t c, int64_t n, int64_t vocab, F16 scale,
                              float ref, float* sum) {
  const int64_t padded = (n + 15) / 16 * 16;
  const F16 vref(ref);
  F16 a0(0.0f), a1(0.0f);
  int64_t j = 0;
  for (; j + 32 <= padded; j += 32) {
    prefetch_next(row, c, j, vocab);
    a0 = a0 + exp2_le127_lanes(chunk_vector(row, c, n, j) * scale - vref);
    a1 = a1 + exp2_le127_lanes(chunk_vector(row, c, n, j + 16) * scale - vref);
  }
  if (j < padded) a0 = a0 + exp2_le127_lanes(chunk_vector(row, c, n, j) * scale - vref);
  *sum = reduce_add(a0 + a1);
  return *sum < 0x1p64f;  // false for +inf and NaN too
}

// The same statistics without masking, in the same order of additions: a -inf lane (raw, or
// scaled past -FLT_MAX) adds 2^-inf = 0 exactly as a masked one does, so when no lane is NaN
// or scales to +inf the result is bit for bit the masked path's. Those lanes show in the
// results (a +inf max, a NaN sum), and then this returns false and the caller takes the
// masked path. Saves the classification, the blend and the staging store of every lane.
template <typename scalar_t>
inline bool chunk_stats_unmasked(const scalar_t* row, int64_t c, int64_t n, int64_t vocab,
                                 F16 scale, SoftmaxStats* out) {
  F16 m0(kNegInf), m1(kNegInf);
  int64_t i = 0;
  for (; i + 32 <= n; i += 32) {
    m0 = max_f(load_logits(row, c + i) * scale, m0);
    m1 = max_f(load_logits(row, c + i + 16) * scale, m1);
  }
  for (; i < n; i += 16) m0 = max_f(chunk_vector(row, c, n, i) * scale, m0);
  const float m = reduce_max(max_f(m0, m1));  // never NaN: max_f keeps the running value
  if (m == kNegInf) {
    *out = SoftmaxStats{kNegInf, 0.0f};
    return true;
  }
  if (!dspark::is_finite_f(m)) return false;  // a lane scales to +inf
  float sum;  // against the chunk's own max: at most 1024, so only a NaN lane fails
  if (!chunk_sum_against(row, c, n, vocab, scale, m, &sum)) return false;
  *out = SoftmaxStats{m, sum};
  return true;
}

// log2-sum-exp2 of the scaled row (as row_passes.h row_lse; the sum's rounding differs).
template <typename scalar_t>
float row_lse(const scalar_t* row, int64_t vocab, float scale) {
  alignas(64) float buf[kChunk];
  SoftmaxStats acc{kNegInf, 0.0f};
  const F16 vscale(scale);
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    float sum;
    if (acc.max != kNegInf && chunk_sum_against(row, c, n, vocab, vscale, acc.max, &sum)) {
      acc.sum += sum;  // same reference
      continue;
    }
    SoftmaxStats chunk;
    if (!chunk_stats_unmasked(row, c, n, vocab, vscale, &chunk)) {
      chunk = chunk_stats_masked(row, c, n, vocab, vscale, buf);
    }
    if (chunk.max != kNegInf) acc = stats2_merge(acc, chunk);
  }
  return stats2_lse(acc);
}

// The Philox groups of one SIMD block (kBlockLanes lanes from lane `begin`, a multiple of
// kBlockLanes) of `rng`: their uniforms in lane order, out[q] holding lanes
// begin + 16q .. begin + 16q + 15. Lane 4g + j is word j of group g: the SoA words are
// converted first, then interleaved sixteen groups at a time (words 0/1 and 2/3, then 64-bit
// pairs of those).
inline void block_uniforms(const RngStream& rng, int64_t begin, F16 out[kBlockVectors]) {
  alignas(64) uint32_t w[4][kPhiloxSimdGroups];
  philox_simd_block(rng, static_cast<uint32_t>(begin / 4), w[0], w[1], w[2], w[3]);
  const __m512i pair_lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
  const __m512i pair_hi =
      _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
  const __m512i quad_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
  const __m512i quad_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
  const auto quad = [](__m512 a, __m512i idx, __m512 b) {
    return F16(_mm512_castpd_ps(
        _mm512_permutex2var_pd(_mm512_castps_pd(a), idx, _mm512_castps_pd(b))));
  };
  for (int g = 0; g < kPhiloxSimdGroups; g += 16) {
    F16 e[4];
    for (int j = 0; j < 4; ++j) e[j] = uniform_lanes(U16::load(w[j] + g));
    const __m512 t01_lo = _mm512_permutex2var_ps(e[0].v, pair_lo, e[1].v);
    const __m512 t01_hi = _mm512_permutex2var_ps(e[0].v, pair_hi, e[1].v);
    const __m512 t23_lo = _mm512_permutex2var_ps(e[2].v, pair_lo, e[3].v);
    const __m512 t23_hi = _mm512_permutex2var_ps(e[2].v, pair_hi, e[3].v);
    F16* o = out + g / 4;  // 16 groups = 64 lanes = 4 vectors
    o[0] = quad(t01_lo, quad_lo, t23_lo);
    o[1] = quad(t01_lo, quad_hi, t23_lo);
    o[2] = quad(t01_hi, quad_lo, t23_hi);
    o[3] = quad(t01_hi, quad_hi, t23_hi);
  }
}

// Gumbel-max sample of the row's softmax (as row_passes.h row_sample). Lanes that provably
// cannot beat a key already reached (gumbel_may_beat) skip their two logarithms.
template <typename scalar_t>
int64_t row_sample(const scalar_t* row, int64_t vocab, float scale, const RngStream& rng) {
  alignas(64) float keys[kChunk];
  ChunkArgMax best;
  const F16 vscale(scale);
  float bar = kNegInf;  // the largest key reached so far
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    F16 chunk_max(kNegInf);
    for (int64_t b = 0; b < n; b += kBlockLanes) {
      F16 u[kBlockVectors];
      block_uniforms(rng, c + b, u);
      const F16 vbar(gumbel_bar(bar));
      F16 reached(kNegInf);
      for (int q = 0; q < kBlockVectors && b + 16 * q < n; ++q) {
        const int64_t j = b + 16 * q;
        if ((j & 31) == 0) prefetch_next(row, c, j, vocab);
        const F16 x = (j + 16 <= n) ? load_logits(row, c + j)
                                    : load_logits_tail(row, c + j, static_cast<int>(n - j));
        const F16 s = masked_scaled(x, vscale);
        F16 key(kNegInf);
        if (gumbel_may_beat(s, u[q], vbar).k != 0) {
          key = gumbel2_key(s, neg_log2_of_uniform(u[q]));
          reached = max_f(key, reached);
        }
        key.store(keys + j);
      }
      bar = dspark::max_f(reduce_max(reached), bar);
      chunk_max = max_f(reached, chunk_max);
    }
    best.offer_chunk_max(keys, c, reduce_max(chunk_max));
  }
  return best.index;
}

// p and q of lanes [j, j+16) of chunk c (q: draft row, or the delta at `onehot`).
template <typename scalar_t>
struct ResidualLanes {
  const scalar_t* t_row;
  const scalar_t* d_row;  // nullptr: one-hot drafts
  int64_t vocab;
  float scale_f, lse_t_f, lse_d_f;
  int64_t onehot;
  F16 scale = F16(scale_f), lse_t = F16(lse_t_f), lse_d = F16(lse_d_f);
  bool t_finite = lse_t_f != kNegInf, d_finite = lse_d_f != kNegInf;

  static F16 row_prob(F16 s, F16 lse, bool finite) {
    return finite ? prob_finite_lse(s, lse) : prob(s, lse);
  }
  void probs(int64_t c, int64_t n, int64_t j, F16* p, F16* q) const {
    *p = row_prob(masked_scaled(chunk_vector(t_row, c, n, j), scale), lse_t, t_finite);
    if (d_row != nullptr) {
      *q = row_prob(masked_scaled(chunk_vector(d_row, c, n, j), scale), lse_d, d_finite);
    } else {
      const int64_t at = onehot - (c + j);  // the one-hot lane within these 16, if any
      const __mmask16 hit = (at >= 0 && at < 16 && at < n - j)
                                ? static_cast<__mmask16>(1u << at) : static_cast<__mmask16>(0);
      *q = F16(_mm512_maskz_mov_ps(hit, _mm512_set1_ps(1.0f)));
    }
  }
  void prefetch(int64_t c, int64_t j) const {
    prefetch_next(t_row, c, j, vocab);
    if (d_row != nullptr) prefetch_next(d_row, c, j, vocab);
  }
};

// Z = sum_x max(w p(x) - q(x), 0) (as row_passes.h row_residual_mass).
template <typename scalar_t>
float row_residual_mass(const scalar_t* t_row, const scalar_t* d_row, int64_t vocab,
                        float scale, float w, float lse_t, float lse_d, int64_t onehot) {
  const ResidualLanes<scalar_t> lanes{t_row, d_row, vocab, scale, lse_t, lse_d, onehot};
  const F16 vw(w);
  float z = 0.0f;
  for (int64_t c = 0; c < vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, vocab - c);
    F16 acc(0.0f);
    for (int64_t j = 0; j < n; j += 16) {
      if ((j & 31) == 0) lanes.prefetch(c, j);
      F16 p, q;
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
template <typename scalar_t, bool kOverP>
int64_t race(const ResidualLanes<scalar_t>& lanes, float w, const RngStream& rng) {
  alignas(64) float keys[kChunk];
  ChunkArgMax best;
  const F16 vw(w);
  float bar = kNegInf;  // the largest key reached so far
  for (int64_t c = 0; c < lanes.vocab; c += kChunk) {
    const int64_t n = std::min(kChunk, lanes.vocab - c);
    F16 chunk_max(kNegInf);
    for (int64_t b = 0; b < n; b += kBlockLanes) {
      F16 u[kBlockVectors];
      block_uniforms(rng, c + b, u);
      const F16 vbar(bar);
      F16 reached(kNegInf);
      for (int q = 0; q < kBlockVectors && b + 16 * q < n; ++q) {
        const int64_t j = b + 16 * q;
        if ((j & 31) == 0) lanes.prefetch(c, j);
        F16 p, qv;
        lanes.probs(c, n, j, &p, &qv);
        const F16 weight = kOverP ? p : residual_weight(vw, p, qv);
        F16 key(kNegInf);
        if (race_may_beat(weight, u[q], vbar).k != 0) {
          key = race_key(weight, inv_neg_log2_of_uniform(u[q]));
          reached = max_f(key, reached);
        }
        key.store(keys + j);
      }
      bar = dspark::max_f(reduce_max(reached), bar);
      chunk_max = max_f(reached, chunk_max);
    }
    best.offer_chunk_max(keys, c, reduce_max(chunk_max));
  }
  return best.index;
}

// As row_passes.h row_sample_residual: the residual race, and the race over p (same E per
// lane) only when the residual has no mass.
template <typename scalar_t>
int64_t row_sample_residual(const scalar_t* t_row, const scalar_t* d_row, int64_t vocab,
                            float scale, float w, float lse_t, float lse_d, int64_t onehot,
                            const RngStream& rng) {
  const ResidualLanes<scalar_t> lanes{t_row, d_row, vocab, scale, lse_t, lse_d, onehot};
  const int64_t y = race<scalar_t, false>(lanes, w, rng);
  return y >= 0 ? y : race<scalar_t, true>(lanes, w, rng);
}

}  // namespace simd512
}  // namespace cpu
}  // namespace dspark

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

#endif  // DSPARK_SIMD512
