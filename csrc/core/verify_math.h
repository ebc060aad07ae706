// Per-element and per-position math of verification (SPEC §3), shared by every executor.
//
// The CPU loops and the CUDA block loops call exactly these functions, so a token decided on
// one executor is decided by the same arithmetic on the other.
#pragma once

#include <cstdint>

#include <c10/macros/Macros.h>

#include "inline.h"

#include "fastmath.h"
#include "philox.h"

namespace dspark {

// Logit policy (documented in README "Non-finite logits"): NaN, +inf and -inf logits are all
// masked, i.e. probability zero. A scaled logit that overflows float32 is masked too.
DSPARK_FN float masked_scaled(float logit, float inv_t) {
  const float s = logit * inv_t;
  return is_finite_f(s) ? s : kNegInf;
}

// Running softmax statistics of a row: max m and sum of exp(x - m). The empty state is
// (-inf, 0); log-sum-exp = m + log(sum), -inf for a fully masked row.
struct SoftmaxStats {
  float max;
  float sum;
};

DSPARK_FN SoftmaxStats stats_merge(SoftmaxStats a, SoftmaxStats b) {
  const float m = max_f(a.max, b.max);
  if (m == kNegInf) return SoftmaxStats{kNegInf, 0.0f};
  // exp(-inf - finite) = 0, so an empty side contributes nothing.
  const float sa = (a.max == kNegInf) ? 0.0f : a.sum * exp_f(a.max - m);
  const float sb = (b.max == kNegInf) ? 0.0f : b.sum * exp_f(b.max - m);
  return SoftmaxStats{m, sa + sb};
}

DSPARK_FN float stats_lse(SoftmaxStats s) {
  return (s.max == kNegInf) ? kNegInf : s.max + log_f(s.sum);
}

// Log-sum-exp of a position's target and draft rows (draft = 0 for one-hot drafts).
struct LsePair {
  float target;
  float draft;
};

// log p(x) from a scaled logit and the row's log-sum-exp; -inf when masked.
DSPARK_FN float log_prob(float scaled, float lse) {
  return (scaled == kNegInf || lse == kNegInf) ? kNegInf : scaled - lse;
}

// p(x) = exp(scaled - lse), 0 when masked.
DSPARK_FN float prob(float scaled, float lse) {
  return exp_f(log_prob(scaled, lse));
}

// Token-wise acceptance (SPEC §3.2): accept iff u < p/q, decided in log space so that huge
// ratios cannot overflow. q = 0 => reject; p = 0 => never accept.
DSPARK_FN bool accept_token(float u, float log_p, float log_q) {
  if (log_q == kNegInf || log_p == kNegInf) return false;
  return log_f(u) < log_p - log_q;
}

// Block verification weight update (SPEC §3.3), in log space:
// log w_i = min(0, log w_{i-1} + log p - log q); q = 0 or p = 0 gives w_i = 0.
DSPARK_FN float block_log_weight(float log_w_prev, float log_p, float log_q) {
  if (log_q == kNegInf || log_p == kNegInf || log_w_prev == kNegInf) return kNegInf;
  return min_f(0.0f, log_w_prev + (log_p - log_q));
}

// h_i = Z_i / (Z_i + 1 - w_i), defined as 1 when the denominator is 0.
DSPARK_FN float block_stop_prob(float z, float w) {
  const float den = z + (1.0f - w);
  return (den > 0.0f) ? min_f(1.0f, z / den) : 1.0f;
}

// Residual weight max(w p(x) - q(x), 0) from probabilities.
DSPARK_FN float residual_weight(float w, float p, float q) {
  return max_f(fma_f(w, p, -q), 0.0f);
}

// Exponential-race key: argmax_x weight(x) / E_x with E_x = -log u_x ~ Exp(1) samples x with
// probability weight(x) / sum(weight), with no normalisation or prefix sum. Computed as
// weight * (1 / E_x) so one division serves the residual and the fallback key of a lane.
// Zero weight gives -inf, which ArgMax never takes.
DSPARK_FN float race_key(float weight, float inv_e) {
  return (weight > 0.0f) ? weight * inv_e : kNegInf;
}

// E_x = -log u_x from the lane's Philox word, and its reciprocal for race keys.
DSPARK_FN float neg_log_uniform(uint32_t word) {
  return -log_pos_f(uniform_from_word(word));  // u in [2^-24, 1): normal, E in (0, 16.7]
}
DSPARK_FN float inv_neg_log_uniform(uint32_t word) {
  return 1.0f / neg_log_uniform(word);
}

// Gumbel-max key: argmax_x scaled(x) - log(E_x) samples softmax(scaled) (the Gumbel noise is
// -log(-log u)). Masked -> -inf.
DSPARK_FN float gumbel_key(float scaled, float neg_log_u) {
  return (scaled == kNegInf) ? kNegInf : scaled - log_pos_f(neg_log_u);
}

// Arg-max accumulator, ties to the lowest index (SPEC §2), -1 while empty.
struct ArgMax {
  float key;
  int64_t index;

  C10_HOST_DEVICE static ArgMax empty() { return ArgMax{kNegInf, -1}; }

  // Masked (-inf) keys are never taken, so an all-masked row stays empty (-1).
  DSPARK_FN void offer(float k, int64_t i) {
    if (k == kNegInf) return;
    if (k > key || (k == key && i >= 0 && (index < 0 || i < index))) {
      key = k;
      index = i;
    }
  }
  DSPARK_FN void merge(const ArgMax& o) {
    if (o.index >= 0) offer(o.key, o.index);
  }
};

}  // namespace dspark
