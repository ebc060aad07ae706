// The device-independent part of markov_sample: the per-step r-vectors of the three Markov
// heads and the confidence head (design §4), computed with ATen ops in float32 (small: [B, r]
// and [B, d] sized per step), and the step loop that hands each vector to a backend.
//
// For step k the backend receives u_k (float32 [B, r], contiguous) such that
// bias_k = W2 u_k, writes draft_logits[:, k], draft_lse[:, k] and (unless teacher-forced)
// draft_tokens[:, k]; the loop then reads x_k back for step k + 1. On CUDA every op is
// launched on the current stream, so the loop never waits for the device.
#pragma once

#include <cstdint>
#include <functional>

#include <ATen/ATen.h>

#include "markov_args.h"

namespace dspark {

using MarkovStep = std::function<void(const at::Tensor& u, int64_t k)>;

// Runs steps k = 0..K-1. The previous token x_{k-1} (x_{-1} = anchor) selects the embedding
// e_k = W1[x_{k-1}]; a token outside [0, V) (-1 after a fully masked step, or an invalid id on
// CUDA) gives e_k = 0.
void run_markov_steps(MarkovArgs& a, const MarkovStep& step);

}  // namespace dspark
