// The fused CPU pass of one Markov drafting step over a vocabulary segment of one row
// (core/markov_math.h): z = base + bias rounded to the logits dtype and written, the softmax
// statistics of the scaled z and the arg-max of the sampling keys, reading each input element
// once. Chunked like cpu/row_passes.h: every chunk stays in L1 and each loop is `omp simd`.
#pragma once

#include <algorithm>
#include <cstdint>

#include "../core/markov_math.h"
#include "row_passes.h"

namespace dspark {
namespace cpu {

// z rounded to the logits dtype: stored, and returned as float.
inline float store_z(float* out, float z) {
  *out = z;
  return z;
}
inline float store_z(c10::BFloat16* out, float z) {
  const uint32_t bits = bf16_round_bits(z);
  out->x = static_cast<uint16_t>(bits);
  return bits_float(bits << 16);
}
inline float store_z(c10::Half* out, float z) {
  const c10::Half h(z);
  *out = h;
  return static_cast<float>(h);
}

struct SegmentResult {
  SoftmaxStats stats{kNegInf, 0.0f};
  ArgMax best = ArgMax::empty();
};

// Lanes [begin, end) of one row; begin is a multiple of kChunk (so of 4: whole Philox groups).
template <typename scalar_t>
SegmentResult markov_segment(const scalar_t* __restrict__ base, const float* __restrict__ bias,
                             scalar_t* __restrict__ z, int64_t begin, int64_t end,
                             MarkovRowMode mode, const RngStream& rng) {
  alignas(64) float s[kChunk];
  alignas(64) float e[kChunk];
  SegmentResult res;
  ChunkArgMax best;
  for (int64_t c = begin; c < end; c += kChunk) {
    const int64_t n = std::min(kChunk, end - c);
    float m = kNegInf;
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; ++i) {
      const float zr = store_z(z + c + i, to_float(base[c + i]) + bias[c + i]);
      s[i] = masked_scaled(zr, mode.inv_t);
      m = max_f(s[i], m);
    }
    if (m != kNegInf) {
      float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < n; ++i) sum += exp_f(s[i] - m);
      res.stats = stats_merge(res.stats, SoftmaxStats{m, sum});
    }
    if (mode.sample) {
      fill_neg_log_uniform(rng, c, n, e, /*reciprocal=*/false);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) e[i] = gumbel_key(s[i], e[i]);
      best.offer_chunk(e, n, c);
    } else {
      best.offer_chunk(s, n, c);
    }
  }
  if (best.index >= 0) res.best = ArgMax{best.key, best.index};
  return res;
}

}  // namespace cpu
}  // namespace dspark
