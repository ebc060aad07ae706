// The per-request verification algorithms (design §3.1-3.3), written once against an
// executor interface so the CPU kernel (one thread per request) and the CUDA kernel (one
// thread block per request, every thread running this control flow on broadcast values)
// make identical decisions.
//
// An executor `Exec` for one request provides:
//   int64_t vocab() const;
//   int64_t draft_token(int64_t k) const;            // raw id, may be out of range
//   float target_logit(int64_t k, int64_t v) const;   // one element of target row k
//   float draft_value(int64_t k, int64_t v) const;    // one element of draft row k
//   bool has_draft_row() const;                       // false: one-hot drafts (q = delta)
//   bool draft_is_probs() const;                      // draft rows hold q itself (draft
//                                                    // probabilities), not logits
//   LsePair row_lses(int64_t k, float scale);         // reductions over whole rows: the
//                                                    // log2-sum-exp2 of target and draft row
//                                                    // k (draft 0 for one-hot drafts and
//                                                    // draft probabilities: no pass)
//   float residual_mass(int64_t k, float scale, float w, float lse_t, float lse_d,
//                       int64_t onehot);             // sum_x max(w p - q, 0)
//   int64_t sample_residual(int64_t k, float scale, float w, float lse_t, float lse_d,
//                           int64_t onehot, RngStream rng);  // race over max(w p - q, 0),
//                                                    // falls back to p when that mass is 0
//   int64_t sample_target(int64_t k, float scale, RngStream rng);  // Gumbel-max over p_k
//   int64_t argmax_target(int64_t k);                // greedy, -1 if the row is all masked
//   void emit(int64_t j, int64_t token); void flag(int64_t k, int8_t f);
//   void finish(int64_t accepted, int64_t emitted);
// `onehot` is the draft token when drafts are one-hot, else -1. `scale` = verify_scale(1/T):
// scaled logits, lse and log-probabilities are in log2 units (core/verify_math.h).
#pragma once

#include <cstdint>

#include <c10/macros/Macros.h>

#include "philox.h"
#include "verify_math.h"

namespace dspark {

// Per-position flags written to accept_flags (for metrics).
constexpr int8_t kFlagUntested = -1;
constexpr int8_t kFlagRejected = 0;
constexpr int8_t kFlagAccepted = 1;

struct RowParams {
  int64_t num_draft;   // l_r, already validated 0 <= l_r <= K
  float temperature;   // 0 => greedy
  int64_t seed;
  int64_t offset;
};

// Valid temperatures: 0 (greedy) or finite positive. Anything else makes the CUDA kernel
// emit nothing for the row (the CPU op raises before it gets here).
C10_HOST_DEVICE inline bool temperature_ok(float t) { return t >= 0.0f && is_finite_f(t); }

template <class Exec>
C10_HOST_DEVICE inline bool draft_in_vocab(const Exec& ex, int64_t token) {
  return token >= 0 && token < ex.vocab();
}

// design §3.1: accept while the draft equals the target argmax; then one argmax token.
template <class Exec>
C10_HOST_DEVICE void verify_row_greedy(Exec& ex, int64_t num_draft) {
  int64_t k = 0;
  for (; k < num_draft; ++k) {
    const int64_t best = ex.argmax_target(k);
    const int64_t x = ex.draft_token(k);
    if (best < 0 || x != best) {
      ex.flag(k, kFlagRejected);
      ex.emit(k, best);
      ex.finish(k, k + 1);
      return;
    }
    ex.flag(k, kFlagAccepted);
    ex.emit(k, x);
  }
  ex.emit(num_draft, ex.argmax_target(num_draft));
  ex.finish(num_draft, num_draft + 1);
}

// log2 q(x) for draft token x at position k (one-hot drafts: q(x) = 1; draft probabilities:
// q(x) is the element itself, under the draft_prob policy of verify_math.h).
template <class Exec>
C10_HOST_DEVICE inline float draft_log_prob(Exec& ex, int64_t k, int64_t x, float scale,
                                            float lse_d) {
  if (!ex.has_draft_row()) return 0.0f;
  if (ex.draft_is_probs()) return draft_log_prob_of(ex.draft_value(k, x));
  return log_prob(masked_scaled(ex.draft_value(k, x), scale), lse_d);
}

// design §3.2: token-wise rejection sampling.
template <class Exec>
C10_HOST_DEVICE void verify_row_token(Exec& ex, const RowParams& rp) {
  const float scale = verify_scale(1.0f / rp.temperature);
  const bool onehot = !ex.has_draft_row();
  for (int64_t k = 0; k < rp.num_draft; ++k) {
    const int64_t x = ex.draft_token(k);
    const bool valid = draft_in_vocab(ex, x);
    const LsePair lse = ex.row_lses(k, scale);
    const float lse_t = lse.target, lse_d = lse.draft;
    float log_p = kNegInf, log_q = kNegInf;
    if (valid) {
      log_p = log_prob(masked_scaled(ex.target_logit(k, x), scale), lse_t);
      log_q = draft_log_prob(ex, k, x, scale, lse_d);
    }
    const RngStream acc_rng = RngStream::make(rp.seed, rp.offset, k, RngPurpose::kAccept);
    const float u = uniform_from_word(acc_rng.words(0).v[0]);
    if (!accept_token(u, log_p, log_q)) {
      ex.flag(k, kFlagRejected);
      const RngStream res_rng = RngStream::make(rp.seed, rp.offset, k, RngPurpose::kResidual);
      ex.emit(k, ex.sample_residual(k, scale, 1.0f, lse_t, lse_d, onehot ? x : -1, res_rng));
      ex.finish(k, k + 1);
      return;
    }
    ex.flag(k, kFlagAccepted);
    ex.emit(k, x);
  }
  const RngStream bonus_rng =
      RngStream::make(rp.seed, rp.offset, rp.num_draft, RngPurpose::kResidual);
  ex.emit(rp.num_draft, ex.sample_target(rp.num_draft, scale, bonus_rng));
  ex.finish(rp.num_draft, rp.num_draft + 1);
}

// design §3.3: block verification. 1-based i of the spec = position k + 1 here: w_i uses row
// k = i-1, res_i / Z_i / the correction after tau = i use row k = i.
template <class Exec>
C10_HOST_DEVICE void verify_row_block(Exec& ex, const RowParams& rp) {
  const float scale = verify_scale(1.0f / rp.temperature);
  const bool onehot = !ex.has_draft_row();
  const int64_t l = rp.num_draft;
  float log_w = 0.0f;  // log w_0
  int64_t tau = 0;
  float w_tau = 1.0f;  // w_0, used by res_0 = max(p_1 - q_1, 0)
  float lse_t_tau = 0.0f, lse_d_tau = 0.0f;
  for (int64_t k = 0; k < l; ++k) {
    const LsePair lse = ex.row_lses(k, scale);
    const float lse_t = lse.target, lse_d = lse.draft;
    if (k == 0) {
      lse_t_tau = lse_t;
      lse_d_tau = lse_d;
    } else {
      // i = k < l: Z_i over row k with w_i, then the stop test eta_i <= h_i.
      const float w = exp2_f(log_w);
      const int64_t at = onehot ? ex.draft_token(k) : -1;
      const float z = ex.residual_mass(k, scale, w, lse_t, lse_d, at);
      const float h = block_stop_prob(z, w);
      const RngStream rng = RngStream::make(rp.seed, rp.offset, k - 1, RngPurpose::kAccept);
      const bool pass = uniform_from_word(rng.words(0).v[0]) <= h;
      ex.flag(k - 1, pass ? kFlagAccepted : kFlagRejected);
      if (pass) {
        tau = k;
        w_tau = w;
        lse_t_tau = lse_t;
        lse_d_tau = lse_d;
      }
    }
    // w_{k+1} from p_k(x_k) / q_k(x_k).
    const int64_t x = ex.draft_token(k);
    float log_p = kNegInf, log_q = kNegInf;
    if (draft_in_vocab(ex, x)) {
      log_p = log_prob(masked_scaled(ex.target_logit(k, x), scale), lse_t);
      log_q = draft_log_prob(ex, k, x, scale, lse_d);
    }
    log_w = block_log_weight(log_w, log_p, log_q);
  }
  if (l > 0) {
    // i = l: h_l = w_l.
    const RngStream rng = RngStream::make(rp.seed, rp.offset, l - 1, RngPurpose::kAccept);
    const bool pass = uniform_from_word(rng.words(0).v[0]) <= exp2_f(log_w);
    ex.flag(l - 1, pass ? kFlagAccepted : kFlagRejected);
    if (pass) tau = l;
  }
  for (int64_t k = 0; k < tau; ++k) ex.emit(k, ex.draft_token(k));
  const RngStream rng = RngStream::make(rp.seed, rp.offset, tau, RngPurpose::kResidual);
  int64_t y;
  if (tau == l) {
    y = ex.sample_target(l, scale, rng);
  } else {
    // res_tau over row tau. With one-hot drafts q is the delta at the draft token there.
    const int64_t at = onehot ? ex.draft_token(tau) : -1;
    y = ex.sample_residual(tau, scale, w_tau, lse_t_tau, lse_d_tau, at, rng);
  }
  ex.emit(tau, y);
  ex.finish(tau, tau + 1);
}

template <class Exec>
C10_HOST_DEVICE void verify_row(Exec& ex, const RowParams& rp, bool block_method) {
  if (!temperature_ok(rp.temperature)) {
    ex.finish(0, 0);  // invalid row: nothing emitted (only reachable on CUDA)
    return;
  }
  // T = 0 is greedy; so is a positive T so small that log2(e)/T overflows, where
  // softmax(z / T) is the one-hot argmax anyway.
  if (rp.temperature == 0.0f || !is_finite_f(verify_scale(1.0f / rp.temperature))) {
    verify_row_greedy(ex, rp.num_draft);
  } else if (block_method) {
    verify_row_block(ex, rp);
  } else {
    verify_row_token(ex, rp);
  }
}

}  // namespace dspark
