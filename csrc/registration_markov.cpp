// Schema of the Markov-head drafting op (design §4); kernels in cpu/markov_cpu.cpp and
// cuda/markov_cuda.cu, fake kernel in dspark_ext/_fake_markov.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dspark, m) {
  // Outputs: (draft_tokens int64 [B, K], draft_logits [B, K, V] (dtype of base_logits),
  // draft_lse float32 [B, K], confidence_logits float32 [B, K] ([B, 0] without conf_weight)).
  // head: 'vanilla' | 'gated' | 'rnn'; head_weight/head_bias are gate_proj (gated) or
  // joint_proj (rnn). teacher_tokens [B, K]: teacher-forced block mode (no sampling).
  m.def(
      "markov_sample(Tensor base_logits, Tensor anchor_tokens, Tensor w1, Tensor w2, "
      "Tensor temperature, Tensor seed, Tensor offset, str head, Tensor? hidden, "
      "Tensor? head_weight, Tensor? head_bias, Tensor? conf_weight, Tensor? conf_bias, "
      "Tensor? teacher_tokens) -> (Tensor, Tensor, Tensor, Tensor)");
  // Top-k Markov correction (core/markov_topk.h): the bias only for each position's topk
  // largest base logits, every other logit -inf. Outputs: (draft_tokens int64 [B, K],
  // candidate logits [B, K, topk] (dtype of base_logits), candidate ids int64 [B, K, topk],
  // draft_lse float32 [B, K], confidence_logits float32 [B, K] or [B, 0]).
  m.def(
      "markov_sample_topk(Tensor base_logits, Tensor anchor_tokens, Tensor w1, Tensor w2, "
      "Tensor temperature, Tensor seed, Tensor offset, str head, Tensor? hidden, "
      "Tensor? head_weight, Tensor? head_bias, Tensor? conf_weight, Tensor? conf_bias, "
      "Tensor? teacher_tokens, int topk) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}
