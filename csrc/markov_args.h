// Argument checking and output allocation of dspark::markov_sample (Markov-head drafting,
// design §4), shared by the CPU and CUDA backends. As for verification (verify_args.h): shapes,
// dtypes and devices are checked everywhere; value checks (anchor / teacher ids in [0, V),
// temperatures finite and >= 0) only for CPU tensors, since reading CUDA memory would
// synchronise the host. The CUDA kernel instead writes token -1 at every position of a row
// whose anchor or temperature is invalid.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>

#include <ATen/ATen.h>

namespace dspark {

enum class MarkovHead { kVanilla = 0, kGated = 1, kRnn = 2 };

using MarkovOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct MarkovArgs {
  // Inputs (validated).
  at::Tensor base;         // [B, K, V] float32/bfloat16/float16, vocabulary dim contiguous
  at::Tensor anchor;       // int64 [B] contiguous
  at::Tensor w1, w2;       // [V, r] float32/bfloat16, contiguous
  at::Tensor temperature;  // float32 [B]
  at::Tensor seed, offset; // int64 [B]
  MarkovHead head = MarkovHead::kVanilla;
  std::optional<at::Tensor> hidden;        // [B, K, d]
  std::optional<at::Tensor> head_weight;   // gated [r, d + r] / rnn [3r, 2r + d]
  std::optional<at::Tensor> head_bias;     // gated [r] / rnn [3r], or none (zero)
  std::optional<at::Tensor> conf_weight;   // [d + r] or [d] (a [1, n] Linear weight is accepted)
  std::optional<at::Tensor> conf_bias;     // [1] or [] or none
  std::optional<at::Tensor> teacher;       // int64 [B, K]: teacher-forced (block) mode
  int64_t batch = 0, steps = 0, vocab = 0, rank = 0, hidden_size = 0;
  int64_t topk = 0;  // top-k Markov correction (markov_sample_topk); 0: dense
  bool conf_with_markov = false;
  // Outputs.
  at::Tensor tokens;  // int64 [B, K]
  at::Tensor logits;  // [B, K, V] (top-k: [B, K, topk], the candidates'), dtype of base
  at::Tensor ids;     // top-k only: int64 [B, K, topk], the candidates' vocabulary ids
  at::Tensor lse;     // float32 [B, K]
  at::Tensor conf;    // float32 [B, K], or [B, 0] without the confidence head

  MarkovOutputs outputs() const { return {tokens, logits, lse, conf}; }
};

MarkovArgs make_markov_args(const at::Tensor& base_logits, const at::Tensor& anchor_tokens,
                            const at::Tensor& w1, const at::Tensor& w2,
                            const at::Tensor& temperature, const at::Tensor& seed,
                            const at::Tensor& offset, const std::string& head,
                            const std::optional<at::Tensor>& hidden,
                            const std::optional<at::Tensor>& head_weight,
                            const std::optional<at::Tensor>& head_bias,
                            const std::optional<at::Tensor>& conf_weight,
                            const std::optional<at::Tensor>& conf_bias,
                            const std::optional<at::Tensor>& teacher_tokens,
                            int64_t topk = 0);

// markov_sample_topk's topk, refused unless >= 1 (make_markov_args then checks <= V).
int64_t checked_topk(int64_t topk);

using MarkovTopkOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// (draft_tokens, candidate logits, candidate ids, draft_lse, confidence_logits).
inline MarkovTopkOutputs topk_outputs(const MarkovArgs& a) {
  return {a.tokens, a.logits, a.ids, a.lse, a.conf};
}

}  // namespace dspark
