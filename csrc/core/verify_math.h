// Per-element and per-position math of verification (design §3), shared by every executor.
//
// The CPU loops and the CUDA block loops call exactly these functions, so a token decided on
// one executor is decided by the same arithmetic on the other. The per-element functions are
// lane-generic (F = float, or a SIMD float vector with the same operations: cpu/simd512.h,
// cpu/simd256.h; see core/fastmath.h), so the SIMD CPU passes run this very code 16 or 8
// lanes at a time.
//
// Verification works in log2 units: a "scaled logit" is logit * log2(e) / T (verify_scale),
// a row's "lse" is log2 sum 2^scaled, log p = scaled - lse, p = 2^(scaled - lse); acceptance
// and block weights compare log2 ratios, races use E' = -log2 u = E / ln 2. Each is the
// natural-base quantity times a positive constant, so every decision is the same law; base 2
// only makes the exponentials cheaper (core/fastmath.h). The Markov head (markov_math.h)
// keeps the natural base, since its log-sum-exp is an output.
#pragma once

#include <cstdint>

#include <c10/macros/Macros.h>

#include "inline.h"

#include "fastmath.h"
#include "philox.h"

namespace dspark {

// Logit policy (documented in README "Non-finite logits"): NaN, +inf and -inf logits are all
// masked, i.e. probability zero. A scaled logit that overflows float32 is masked too.
template <typename F>
DSPARK_FN F masked_scaled(F logit, F scale) {
  const F s = logit * scale;
  return select_f(is_finite_f(s), s, F(kNegInf));
}

constexpr float kLog2e = 1.44269504088896340736f;

// The factor verification scales logits by: log2(e) / T, rounded once per row.
DSPARK_FN float verify_scale(float inv_t) { return inv_t * kLog2e; }

// Running softmax statistics of a row: max m and sum of exp(x - m). The empty state is
// (-inf, 0); log-sum-exp = m + log(sum), -inf for a fully masked row.
struct SoftmaxStats {
  float max;
  float sum;
};

// Merge in natural base (kBase2 = false: sums of exp(x - m), the Markov head) or base 2
// (sums of 2^(x - m), verification).
template <bool kBase2>
DSPARK_FN float exp_base(float x) {
  return kBase2 ? exp2_f(x) : exp_f(x);
}

template <bool kBase2>
DSPARK_FN SoftmaxStats stats_merge_base(SoftmaxStats a, SoftmaxStats b) {
  const float m = max_f(a.max, b.max);
  if (m == kNegInf) return SoftmaxStats{kNegInf, 0.0f};
  // exp(-inf - finite) = 0, so an empty side contributes nothing.
  const float sa = (a.max == kNegInf) ? 0.0f : a.sum * exp_base<kBase2>(a.max - m);
  const float sb = (b.max == kNegInf) ? 0.0f : b.sum * exp_base<kBase2>(b.max - m);
  return SoftmaxStats{m, sa + sb};
}

DSPARK_FN SoftmaxStats stats_merge(SoftmaxStats a, SoftmaxStats b) {
  return stats_merge_base<false>(a, b);
}

DSPARK_FN float stats_lse(SoftmaxStats s) {
  return (s.max == kNegInf) ? kNegInf : s.max + log_f(s.sum);
}

// The same statistics in base 2 (verification): log2-sum-exp2.
DSPARK_FN SoftmaxStats stats2_merge(SoftmaxStats a, SoftmaxStats b) {
  return stats_merge_base<true>(a, b);
}

DSPARK_FN float stats2_lse(SoftmaxStats s) {
  return (s.max == kNegInf) ? kNegInf : s.max + log2_f(s.sum);
}

// Log-sum-exp of a position's target and draft rows (draft = 0 for one-hot drafts).
struct LsePair {
  float target;
  float draft;
};

// Draft-probability policy (documented in README "Draft probabilities"): a draft row given as
// probabilities q (rejection_sample's draft_probs) is used as given, not renormalised (as
// vLLM's own sampler does: its rows are softmax outputs). An entry that is NaN, +-inf,
// negative, zero or below the smallest normal float (2^-126) counts as q = 0, like a masked
// logit; every other entry is q itself.
constexpr float kMinNormal = 1.17549435e-38f;

template <typename F>
DSPARK_FN F draft_prob(F value) {
  // NaN fails both comparisons.
  return select_f(value >= F(kMinNormal), select_f(value <= F(kFloatMax), value, F(0.0f)),
                  F(0.0f));
}

// log2 q of a draft probability (after draft_prob): -inf for q = 0.
DSPARK_FN float draft_log_prob_of(float value) {
  const float q = draft_prob(value);
  return q > 0.0f ? log2_pos_f(q) : kNegInf;
}

// log2 p(x) from a scaled logit and the row's lse; -inf when masked.
template <typename F>
DSPARK_FN F log_prob(F scaled, F lse) {
  const F ninf = F(kNegInf);
  return select_f(scaled == ninf, ninf, select_f(lse == ninf, ninf, scaled - lse));
}

// p(x) = 2^(scaled - lse), 0 when masked.
template <typename F>
DSPARK_FN F prob(F scaled, F lse) {
  return exp2_lanes(log_prob(scaled, lse));
}

// prob for a row that is not fully masked (finite lse), where lse >= every scaled logit of the
// row: the masking selects are then the identity (-inf - lse = -inf) and the argument is
// <= 0, so this equals prob bit for bit with fewer operations (the SIMD CPU passes use it).
template <typename F>
DSPARK_FN F prob_finite_lse(F scaled, F lse) {
  return exp2_le127_lanes(scaled - lse);
}

// Token-wise acceptance (design §3.2): accept iff u < p/q, decided in log space so that huge
// ratios cannot overflow. q = 0 => reject; p = 0 => never accept.
DSPARK_FN bool accept_token(float u, float log_p, float log_q) {
  if (log_q == kNegInf || log_p == kNegInf) return false;
  return log2_f(u) < log_p - log_q;
}

// Block verification weight update (design §3.3), in log2 space:
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
template <typename F>
DSPARK_FN F residual_weight(F w, F p, F q) {
  return max_f(fma_f(w, p, -q), F(0.0f));
}

// Exponential-race key: argmax_x weight(x) / E_x with E_x = -log u_x ~ Exp(1) samples x with
// probability weight(x) / sum(weight), with no normalisation or prefix sum. Computed as
// weight * (1 / E_x): one division per lane whichever races (residual, fallback) use it, and
// the same rounding on every executor. Zero weight gives -inf, which ArgMax never takes.
template <typename F>
DSPARK_FN F race_key(F weight, F inv_e) {
  return select_f(weight > F(0.0f), weight * inv_e, F(kNegInf));
}

// E_x = -log u_x from the lane's Philox word, and its reciprocal for race keys.
DSPARK_FN float neg_log_uniform(uint32_t word) {
  return -log_pos_f(uniform_from_word(word));  // u in [2^-24, 1): normal, E in (0, 16.7]
}
DSPARK_FN float inv_neg_log_uniform(uint32_t word) {
  return 1.0f / neg_log_uniform(word);
}

// Gumbel-max key: argmax_x scaled(x) - log(E_x) samples softmax(scaled) (the Gumbel noise is
// -log(-log u)). Masked -> -inf. Natural base (the Markov head).
DSPARK_FN float gumbel_key(float scaled, float neg_log_u) {
  return (scaled == kNegInf) ? kNegInf : scaled - log_pos_f(neg_log_u);
}

// Base-2 forms for verification. E' = -log2 u = E / ln 2 is Exp(1/ln 2): the race
// argmax w / E' is the race argmax w / E, and the Gumbel key in log2 units
// scaled2 - log2 E' = log2(e) (scaled - log E) - log2(log2 e) has the same argmax.
// E' and 1/E' from the uniform u of a lane (u in [2^-24, 1): normal, E' in (0, 24]).
template <typename F>
DSPARK_FN F neg_log2_of_uniform(F u) {
  return -log2_pos_lanes(u);
}
template <typename F>
DSPARK_FN F inv_neg_log2_of_uniform(F u) {
  return F(1.0f) / neg_log2_of_uniform(u);
}
// The same from the lane's Philox word.
template <typename U>
DSPARK_FN auto neg_log2_uniform(U word) {
  return neg_log2_of_uniform(uniform_lanes(word));
}
template <typename U>
DSPARK_FN auto inv_neg_log2_uniform(U word) {
  return inv_neg_log2_of_uniform(uniform_lanes(word));
}

// Pruning the exponential race without changing its winner. Since -ln u >= 1 - u, a lane's
// key w / E' is at most w / (log2(e) (1 - u)) (1 - u is exact for our uniforms). So if
// w * kRaceBoundScale < bar * (1 - u), where bar is a key some lane already reached, the
// lane's key (as race_key computes it) is below bar and the lane cannot win; its logarithm
// need not be computed. kRaceBoundScale = ln 2 * (1 + 1e-5): the 1e-5 margin covers the
// rounding of E' (a few ulp), of 1/E' and of the two products compared here, each under
// 1e-6. An executor may skip such lanes or compute them; the argmax is the same.
constexpr float kRaceBoundScale = 0.693154112f;

template <typename F>
DSPARK_FN auto race_may_beat(F weight, F u, F bar) {
  return (weight * F(kRaceBoundScale)) >= (bar * (F(1.0f) - u));
}

// The same for the Gumbel-max race (bonus rows): the key scaled - log2 E' is at most
// scaled - log2(log2(e) (1 - u)) <= scaled - floor(log2(1 - u)) - 0.528, and
// floor(log2(1 - u)) = (exponent field of 1 - u) - 127. So a lane with
// scaled + 126.5 - field(1 - u) < gumbel_bar(bar) cannot win. The margin (0.028 of
// slack in the bound, plus 0.02 + 1e-6 |bar|) covers the rounding of the logarithms (about
// 1e-6) and of the sums (relative 1e-7).
DSPARK_FN float gumbel_bar(float bar) {
  return bar - (0.02f + 1e-6f * ::fabsf(bar));  // -inf stays -inf
}
template <typename F>
DSPARK_FN auto gumbel_may_beat(F scaled, F u, F gumbel_bar_value) {
  const F t = F(126.5f) - exponent_field_f(float_bits(F(1.0f) - u));
  return (scaled + t) >= gumbel_bar_value;
}
template <typename F>
DSPARK_FN F gumbel2_key(F scaled, F neg_log2_u) {
  return select_f(scaled == F(kNegInf), F(kNegInf), scaled - log2_pos_lanes(neg_log2_u));
}

// Arg-max accumulator, ties to the lowest index (design §2), -1 while empty.
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
