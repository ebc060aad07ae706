// Schemas of every dspark op. Backend kernels register themselves with TORCH_LIBRARY_IMPL in
// cpu/ and cuda/; fake (meta) kernels for torch.compile live in dspark_ext/_fake.py.
#include <torch/library.h>

TORCH_LIBRARY(dspark, m) {
  // Outputs of the verification ops: (accepted[B], out_tokens[B, K+1] (-1 padded),
  // num_emitted[B], accept_flags int8 [B, K] padded / [T] ragged: 1 accepted, 0 rejected,
  // -1 not tested). Index inputs (draft_tokens, num_draft, cu_num_draft, seed, offset) are
  // int64 or int32. Ragged offsets: cu_num_draft [B + 1] with a leading 0, or with
  // cu_inclusive=True vLLM's [B] inclusive cumulative counts.
  m.def(
      "verify_greedy(Tensor target_logits, Tensor draft_tokens, Tensor? num_draft) -> "
      "(Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "verify_greedy_ragged(Tensor target_logits, Tensor draft_tokens, Tensor cu_num_draft, "
      "int max_num_draft, bool cu_inclusive=False) -> (Tensor, Tensor, Tensor, Tensor)");
  // Draft rows: draft_logits (q = softmax(draft_logits / T)), or draft_probs (q given, at the
  // request's temperature already), or neither (one-hot drafts); not both. draft_lse (only
  // with draft_logits): the caller's float32 logsumexp(draft_logits / T) per draft row, laid
  // out like accept_flags, which replaces the op's own pass (opt-in: README "draft_lse").
  // draft_ids (int64/int32, the shape of the draft rows [.., W]): sparse draft rows, entry j
  // standing for vocabulary id draft_ids[.., j], every other id at logit -inf / probability 0
  // (top-k Markov candidates, a reduced draft vocabulary's map).
  m.def(
      "rejection_sample(Tensor target_logits, Tensor draft_tokens, Tensor? draft_logits, "
      "Tensor temperature, Tensor seed, Tensor offset, Tensor? num_draft, bool block, "
      "Tensor? draft_probs=None, Tensor? draft_lse=None, Tensor? draft_ids=None) -> "
      "(Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "rejection_sample_ragged(Tensor target_logits, Tensor draft_tokens, Tensor? draft_logits, "
      "Tensor cu_num_draft, int max_num_draft, Tensor temperature, Tensor seed, Tensor offset, "
      "bool block, Tensor? draft_probs=None, Tensor? draft_lse=None, Tensor? draft_ids=None, "
      "bool cu_inclusive=False) -> (Tensor, Tensor, Tensor, Tensor)");
}
