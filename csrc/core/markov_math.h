// Per-element math of Markov-head drafting (design §4), shared by the CPU and CUDA executors.
//
// One drafting step of one row, for every vocabulary lane v:
//   z_f   = float(base_logits[v]) + bias[v]            (float32 add; bias accumulated in fp32)
//   z     = z_f rounded to the dtype of base_logits     (written to draft_logits)
//   s     = masked_scaled(float(z), lse_inv_t)          (the softmax argument)
//   key   = s (greedy rows) or gumbel_key(s, -log u_v)  (u_v: lane v of the kDraftSample stream)
// The token is the arg-max of the keys (ties to the lowest index, -1 when every lane is
// masked) and draft_lse the log-sum-exp of s. Sampling reads the *rounded* z, so the law the
// token is drawn from is exactly the law verification computes from draft_logits.
#pragma once

#include <cstdint>

#include <c10/macros/Macros.h>

#include "inline.h"

#include "fastmath.h"
#include "philox.h"
#include "verify_math.h"

namespace dspark {

constexpr int64_t kMarkovMaxRank = 512;

// Per-row sampling mode. T = 0 is greedy; so is a positive T so small that 1/T overflows
// (as in verification). Greedy rows report the log-sum-exp of z itself (scale 1).
struct MarkovRowMode {
  float inv_t;  // scale of the softmax argument (1 for greedy rows)
  bool sample;  // Gumbel-max (true) or arg-max (false)
};

DSPARK_FN bool markov_temperature_ok(float t) { return t >= 0.0f && is_finite_f(t); }

DSPARK_FN MarkovRowMode markov_row_mode(float temperature) {
  const float inv_t = (temperature > 0.0f) ? 1.0f / temperature : 0.0f;
  const bool sample = temperature > 0.0f && is_finite_f(inv_t);
  return MarkovRowMode{sample ? inv_t : 1.0f, sample};
}

// The stream of draft position k (design §2): purpose kDraftSample, counter position k.
DSPARK_FN RngStream markov_stream(int64_t seed, int64_t offset, int64_t k) {
  return RngStream::make(seed, offset, k, RngPurpose::kDraftSample);
}

// Round-to-nearest-even float -> bfloat16 bits (NaN stays a quiet NaN), written branch-free
// so the CPU loop vectorises; the same result as c10::BFloat16 and __float2bfloat16_rn.
DSPARK_FN uint32_t bf16_round_bits(float x) {
  const uint32_t u = float_bits(x);
  const uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return (x != x) ? 0x7FC0u : rounded;
}

// The float value of x rounded to bfloat16.
DSPARK_FN float bf16_round(float x) { return bits_float(bf16_round_bits(x) << 16); }

// Sampling key of one lane from its scaled logit (see the file comment).
DSPARK_FN float markov_key(float scaled, bool sample, float neg_log_u) {
  return sample ? gumbel_key(scaled, neg_log_u) : scaled;
}

}  // namespace dspark
