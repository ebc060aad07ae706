// Argument checking and output allocation for the verification ops, shared by the CPU and
// CUDA backends. Shape, dtype and device checks run on every backend; checks that must read
// tensor values (token ranges, offsets, temperatures) run here only for CPU tensors, since
// reading CUDA memory would synchronise the host (the CUDA kernel instead leaves a row with
// invalid values empty and never reads out of bounds: see README "Input validation").
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>

#include <ATen/ATen.h>

#include "core/verify_problem.h"

namespace dspark {

// Debug aid for tests: when on, outputs a kernel must write in full start as these sentinels.
constexpr int64_t kPoisonIndex = -0x5A5A5A5A5A5A5A5ALL;
constexpr int8_t kPoisonFlag = 0x5A;
void set_debug_poison_outputs(bool on);
bool debug_poison_outputs();

using VerifyOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

// The draft rows of a call: draft logits, draft probabilities, or none (one-hot drafts).
struct DraftInput {
  std::optional<at::Tensor> tensor;
  bool probs = false;  // tensor holds probabilities q (core/verify_math.h draft_prob)

  // From the ops' two optional arguments (draft_logits, draft_probs); both given is an error.
  static DraftInput of(const char* op, const std::optional<at::Tensor>& draft_logits,
                       const std::optional<at::Tensor>& draft_probs);
  const char* name() const { return probs ? "draft_probs" : "draft_logits"; }
};

struct VerifyArgs {
  at::Tensor target;                    // logits, last dim contiguous
  std::optional<at::Tensor> draft;      // draft logits or probabilities (same dtype), or none
  bool draft_probs = false;             // draft holds probabilities
  std::optional<at::Tensor> draft_lse;  // float32 [B, K] / [T] contiguous, with draft logits
  // Sparse draft rows (core/verify_problem.h): int32/int64 ids shaped like the draft rows.
  std::optional<at::Tensor> draft_ids;
  int64_t draft_width = 0;              // W: the draft rows' last dimension (V when dense)
  // Index inputs: int32 or int64, read as given (core/verify_problem.h IndexArray).
  at::Tensor draft_tokens;
  std::optional<at::Tensor> num_draft;     // padded: [B], contiguous
  std::optional<at::Tensor> cu_num_draft;  // ragged: [B+1] (or [B] inclusive), contiguous
  bool cu_inclusive = false;               // cu_num_draft holds vLLM's inclusive ends
  std::optional<at::Tensor> temperature;   // float32 [B] contiguous; none = greedy
  std::optional<at::Tensor> seed, offset;  // [B] contiguous
  int64_t batch = 0, max_draft = 0, vocab = 0, num_tokens = 0;
  bool block_method = false;
  // Outputs.
  at::Tensor accepted, out_tokens, num_emitted, accept_flags;

  VerifyOutputs outputs() const { return {accepted, out_tokens, num_emitted, accept_flags}; }
};

// Validate a padded-layout call and allocate its outputs.
VerifyArgs make_padded_args(const char* op, const at::Tensor& target_logits,
                            const at::Tensor& draft_tokens, const DraftInput& draft,
                            const std::optional<at::Tensor>& num_draft,
                            const std::optional<at::Tensor>& temperature,
                            const std::optional<at::Tensor>& seed,
                            const std::optional<at::Tensor>& offset, bool block_method,
                            const std::optional<at::Tensor>& draft_lse = std::nullopt,
                            const std::optional<at::Tensor>& draft_ids = std::nullopt);

// Validate a ragged-layout call and allocate its outputs.
VerifyArgs make_ragged_args(const char* op, const at::Tensor& target_logits,
                            const at::Tensor& draft_tokens, const DraftInput& draft,
                            const at::Tensor& cu_num_draft, int64_t max_num_draft,
                            const std::optional<at::Tensor>& temperature,
                            const std::optional<at::Tensor>& seed,
                            const std::optional<at::Tensor>& offset, bool block_method,
                            bool cu_inclusive = false,
                            const std::optional<at::Tensor>& draft_lse = std::nullopt,
                            const std::optional<at::Tensor>& draft_ids = std::nullopt);

// An int32 / int64 tensor (or none) as the kernels read it.
inline IndexArray index_array(const at::Tensor& t) {
  return IndexArray{t.const_data_ptr(), t.scalar_type() == at::kInt};
}
inline IndexArray index_array(const std::optional<at::Tensor>& t) {
  return t.has_value() ? index_array(*t) : IndexArray{};
}

// Fill the raw-pointer view of validated arguments for one logits dtype.
template <typename scalar_t>
VerifyProblem<scalar_t> make_problem(VerifyArgs& a) {
  VerifyProblem<scalar_t> p;
  p.target = a.target.const_data_ptr<scalar_t>();
  p.draft = a.draft ? a.draft->const_data_ptr<scalar_t>() : nullptr;
  p.draft_probs = a.draft.has_value() && a.draft_probs;
  p.draft_lse = a.draft_lse ? a.draft_lse->const_data_ptr<float>() : nullptr;
  p.draft_ids = index_array(a.draft_ids);
  p.draft_width = a.draft_width;
  p.draft_tokens = index_array(a.draft_tokens);
  p.num_draft = index_array(a.num_draft);
  p.cu_num_draft = index_array(a.cu_num_draft);
  p.cu_inclusive = a.cu_inclusive;
  p.temperature = a.temperature ? a.temperature->const_data_ptr<float>() : nullptr;
  p.seed = index_array(a.seed);
  p.offset = index_array(a.offset);
  p.batch = a.batch;
  p.max_draft = a.max_draft;
  p.vocab = a.vocab;
  p.num_tokens = a.num_tokens;
  const bool ragged = a.cu_num_draft.has_value();
  if (ragged) {
    p.target_sk = a.target.stride(0);
    p.draft_sk = a.draft ? a.draft->stride(0) : 0;
    p.tokens_sk = a.draft_tokens.stride(0);
    p.ids_sk = a.draft_ids ? a.draft_ids->stride(0) : 0;
  } else {
    p.target_sb = a.target.stride(0);
    p.target_sk = a.target.stride(1);
    p.draft_sb = a.draft ? a.draft->stride(0) : 0;
    p.draft_sk = a.draft ? a.draft->stride(1) : 0;
    p.tokens_sb = a.draft_tokens.stride(0);
    p.tokens_sk = a.draft_tokens.stride(1);
    p.ids_sb = a.draft_ids ? a.draft_ids->stride(0) : 0;
    p.ids_sk = a.draft_ids ? a.draft_ids->stride(1) : 0;
  }
  p.block_method = a.block_method;
  p.accepted = a.accepted.data_ptr<int64_t>();
  p.out_tokens = a.out_tokens.data_ptr<int64_t>();
  p.num_emitted = a.num_emitted.data_ptr<int64_t>();
  p.accept_flags = a.accept_flags.data_ptr<int8_t>();
  return p;
}

}  // namespace dspark
