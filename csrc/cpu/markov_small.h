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

#include "markov_pass.h"
#include "row_passes.h"
#include "avx2_dot.h"

namespace dspark {
namespace cpu {

// W2[v] . u for one lane (the tail of bias_by_dots, and its portable form).
template <typename w_t>
inline float dot_row(const w_t* __restrict__ w, const float* __restrict__ u, int64_t r) {
  float acc = 0.0f;
  for (int64_t j = 0; j < r; ++j) acc += to_float(w[j]) * u[j];
  return acc;
}

// bias[v] = W2[v] . u for lanes v in [begin, end); W2 is [V, r] row-major, read in its own
// dtype. With AVX2 four lanes at a time in eight-wide FMA accumulators (avx2_dot.h; four
// independent chains hide the FMA latency; a bfloat16 weight is widened by a shift), elsewhere
// plainly.
template <typename w_t>
inline void bias_by_dots(const w_t* __restrict__ w2, const float* __restrict__ u, int64_t r,
                         int64_t begin, int64_t end, float* __restrict__ bias) {
  int64_t v = begin;
#if defined(DSPARK_AVX2_DOT)
  const int64_t r8 = r - r % 8;
  for (; v + 4 <= end; v += 4) {
    const w_t* w0 = w2 + v * r;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < r8; j += 8) {
      const __m256 x = dot8::load(u + j);
      a0 = dot8::fma(dot8::load(w0 + j), x, a0);
      a1 = dot8::fma(dot8::load(w0 + r + j), x, a1);
      a2 = dot8::fma(dot8::load(w0 + 2 * r + j), x, a2);
      a3 = dot8::fma(dot8::load(w0 + 3 * r + j), x, a3);
    }
    float s[4] = {dot8::sum(a0), dot8::sum(a1), dot8::sum(a2), dot8::sum(a3)};
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
