// Per-candidate math of the top-k Markov correction (design §4; vLLM's dspark_draft_topk),
// shared by the CPU and CUDA executors.
//
// At step k of a row the candidates are the `topk` largest base logits of that position (they
// do not depend on the sampled tokens, so all positions are selected up front), in candidate
// order: base logit descending, ties to the lower vocabulary id, NaN ranked as -inf. Only the
// candidates get the bias; every other logit is -inf. For candidate j with vocabulary id c:
//   z_j   = float(base[c]) + W2[c] . u_k   rounded to the dtype of base_logits (written)
//   s_j   = masked_scaled(float(z_j), inv_t)
//   key_j = s_j (greedy rows) or gumbel_key(s_j, -log u_c), u_c lane c of the kDraftSample
//           stream: the lane the dense path uses, so the law is the dense law of the
//           truncated logits, and topk = V is the dense path.
// The token is the candidate id of the largest key (ties to the lower id, -1 when every key
// is -inf) and draft_lse the log-sum-exp of the s_j.
#pragma once

#include <cstdint>

#include "inline.h"

#include "fastmath.h"
#include "markov_math.h"
#include "philox.h"
#include "verify_math.h"

namespace dspark {

// A base logit as the candidate order ranks it.
DSPARK_FN float topk_rank_value(float x) { return x != x ? kNegInf : x; }

// Candidate order: (value, id) before (other_value, other_id).
DSPARK_FN bool topk_before(float value, int64_t id, float other_value, int64_t other_id) {
  return value > other_value || (value == other_value && id < other_id);
}

// The sampling key of a candidate with vocabulary id `lane` from its scaled logit: one Philox
// call for the candidate's group of four lanes.
DSPARK_FN float markov_topk_key(float scaled, const MarkovRowMode& mode, const RngStream& rng,
                                int64_t lane) {
  if (!mode.sample || scaled == kNegInf) return scaled;
  const Philox4x32Out w = rng.words(static_cast<uint32_t>(lane / 4));
  return gumbel_key(scaled, neg_log_uniform(w.v[lane % 4]));
}

}  // namespace dspark
