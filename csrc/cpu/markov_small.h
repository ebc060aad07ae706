// The small-batch CPU executor of markov_sample (design §4). At a few rows the [B, r] x [r, V]
// bias GEMM is a mat-vec that reads all of W2 once per row anyway, and the per-step ATen ops
// of the generic loop (markov_head.h: embedding gather, masks, the confidence term, the token
// read-back) cost as much as the arithmetic. Here the bias is computed lane by lane, from W2
// in its own dtype (no float32 copy of a bfloat16 W2), straight into the fused pass of
// cpu/markov_pass.h; for the vanilla head the whole step loop of a row runs natively, with no
// ATen op per step. The per-element math is the same (core/markov_math.h); only the bias's
// float32 summation order differs from the GEMM's.
#pragma once

#include <algorithm>
#include <cstdint>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#endif

#include "markov_pass.h"
#include "row_passes.h"

namespace dspark {
namespace cpu {

#if defined(__AVX2__) && defined(__FMA__)
// Eight weights of a row as float32 (a bfloat16 is the high half of a float32).
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8(const c10::BFloat16* p) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline float hsum8(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}
#endif

// W2[v] . u for one lane (the tail of bias_by_dots, and its portable form).
template <typename w_t>
inline float dot_row(const w_t* __restrict__ w, const float* __restrict__ u, int64_t r) {
  float acc = 0.0f;
  for (int64_t j = 0; j < r; ++j) acc += to_float(w[j]) * u[j];
  return acc;
}

// bias[v] = W2[v] . u for lanes v in [begin, end); W2 is [V, r] row-major, read in its own
// dtype. With AVX2 four lanes at a time in eight-wide FMA accumulators (four independent
// chains hide the FMA latency; a bfloat16 weight is widened by a shift), elsewhere plainly.
template <typename w_t>
inline void bias_by_dots(const w_t* __restrict__ w2, const float* __restrict__ u, int64_t r,
                         int64_t begin, int64_t end, float* __restrict__ bias) {
  int64_t v = begin;
#if defined(__AVX2__) && defined(__FMA__)
  const int64_t r8 = r - r % 8;
  for (; v + 4 <= end; v += 4) {
    const w_t* w0 = w2 + v * r;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < r8; j += 8) {
      const __m256 x = _mm256_loadu_ps(u + j);
      a0 = _mm256_fmadd_ps(load8(w0 + j), x, a0);
      a1 = _mm256_fmadd_ps(load8(w0 + r + j), x, a1);
      a2 = _mm256_fmadd_ps(load8(w0 + 2 * r + j), x, a2);
      a3 = _mm256_fmadd_ps(load8(w0 + 3 * r + j), x, a3);
    }
    float s[4] = {hsum8(a0), hsum8(a1), hsum8(a2), hsum8(a3)};
    for (int i = 0; i < 4; ++i) {
      for (int64_t j = r8; j < r; ++j) s[i] += to_float(w0[i * r + j]) * u[j];
      bias[v + i] = s[i];
    }
  }
#endif
  for (; v < end; ++v) bias[v] = dot_row(w2 + v * r, u, r);
}

// One step of one row over the whole vocabulary, in segments of `segment` lanes merged in
// order (as the batched path merges its tasks): writes z and returns the row's softmax
// statistics and arg-max. `bias` holds the row's full [V] bias.
template <typename scalar_t>
inline SegmentResult markov_row_step(const scalar_t* base, const float* bias, scalar_t* z,
                                     int64_t vocab, int64_t segment, MarkovRowMode mode,
                                     const RngStream& rng) {
  SegmentResult out;
  for (int64_t lo = 0; lo < vocab; lo += segment) {
    const SegmentResult part =
        markov_segment(base, bias, z, lo, std::min(vocab, lo + segment), mode, rng);
    out.stats = stats_merge(out.stats, part.stats);
    out.best.merge(part.best);
  }
  return out;
}

}  // namespace cpu
}  // namespace dspark
