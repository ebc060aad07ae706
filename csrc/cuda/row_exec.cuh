// The CUDA executor of core/verify_row.h: one thread block per request.
//
// Every thread of the block runs the shared control flow with its own copy of this executor.
// Element reads (draft ids, single logits) are made by all threads from the same address, and
// every reduction broadcasts its result, so all threads take the same branches and reach the
// same __syncthreads. Only thread 0 writes outputs.
#pragma once

#include <cstdint>

#include "../core/philox.h"
#include "../core/verify_math.h"
#include "../core/verify_problem.h"
#include "block_reduce.cuh"
#include "row_passes.cuh"
#include "vec_load.cuh"

namespace dspark {
namespace cuda {

template <typename scalar_t, int kThreads>
struct CudaRowExec {
  // This request's rows: row k of each starts at base + k * row stride (int64 offsets).
  const scalar_t* target;
  int64_t target_sk;
  const scalar_t* draft;  // nullptr: one-hot drafts
  int64_t draft_sk;
  bool draft_probs;       // draft rows hold probabilities
  const float* draft_lse; // the caller's natural-log lse per draft row, or nullptr
  IndexArray tokens;
  int64_t tokens_sk;
  int64_t vocab_;
  // This request's outputs.
  int64_t* out_tokens;  // [max_draft + 1]
  int8_t* flags;        // [num_draft]
  int64_t* accepted;
  int64_t* num_emitted;
  ReduceScratch* scratch;

  // Only call for a row whose num_draft passed VerifyProblem::row_num_draft: the ragged
  // offsets are then known to keep every row index in bounds.
  __device__ static CudaRowExec make(const VerifyProblem<scalar_t>& pb, int64_t b,
                                     ReduceScratch* scratch) {
    CudaRowExec ex;
    ex.target = pb.target_row(b, 0);
    ex.target_sk = pb.target_sk;
    ex.draft = pb.draft != nullptr ? pb.draft_row(b, 0) : nullptr;
    ex.draft_sk = pb.draft_sk;
    ex.draft_probs = pb.draft_probs;
    ex.draft_lse = pb.draft_lse != nullptr ? pb.draft_lse + pb.flag_index(b, 0) : nullptr;
    ex.tokens = pb.draft_tokens.shifted(pb.ragged() ? pb.ragged_start(b) * pb.tokens_sk
                                                    : b * pb.tokens_sb);
    ex.tokens_sk = pb.tokens_sk;
    ex.vocab_ = pb.vocab;
    ex.out_tokens = pb.out_tokens + b * (pb.max_draft + 1);
    ex.flags = pb.accept_flags + pb.flag_index(b, 0);
    ex.accepted = pb.accepted + b;
    ex.num_emitted = pb.num_emitted + b;
    ex.scratch = scratch;
    return ex;
  }

  __device__ const scalar_t* target_row(int64_t k) const { return target + k * target_sk; }
  __device__ const scalar_t* draft_row(int64_t k) const { return draft + k * draft_sk; }
  __device__ const scalar_t* draft_row_or_null(int64_t k) const {
    return draft != nullptr ? draft_row(k) : nullptr;
  }
  __device__ static bool leader() { return threadIdx.x == 0; }

  // --- the executor interface of core/verify_row.h ---
  __device__ int64_t vocab() const { return vocab_; }
  __device__ int64_t draft_token(int64_t k) const { return tokens[k * tokens_sk]; }
  __device__ float target_logit(int64_t k, int64_t v) const {
    return load_scalar(target_row(k) + v);
  }
  __device__ float draft_value(int64_t k, int64_t v) const { return load_scalar(draft_row(k) + v); }
  __device__ bool has_draft_row() const { return draft != nullptr; }
  __device__ bool draft_is_probs() const { return draft_probs; }

  __device__ LsePair row_lses(int64_t k, float scale) {
    const float lse_t = block_row_lse<kThreads>(target_row(k), vocab_, scale, *scratch);
    // Draft probabilities need no log-sum-exp (broadcast values: the block stays uniform).
    // A caller-given draft_lse (markov_sample's) replaces the draft row's pass.
    const bool draft_logits = draft != nullptr && !draft_probs;
    const float lse_d =
        !draft_logits ? 0.0f
        : draft_lse != nullptr
            ? draft_lse[k] * kLog2e
            : block_row_lse<kThreads>(draft_row(k), vocab_, scale, *scratch);
    return LsePair{lse_t, lse_d};
  }
  __device__ float residual_mass(int64_t k, float scale, float w, float lse_t, float lse_d,
                                 int64_t onehot) {
    return block_residual_mass<kThreads>(target_row(k), draft_row_or_null(k), vocab_,
                                         ResidualParams{scale, w, lse_t, lse_d, onehot,
                                                        draft_probs},
                                         *scratch);
  }
  __device__ int64_t sample_residual(int64_t k, float scale, float w, float lse_t, float lse_d,
                                     int64_t onehot, RngStream rng) {
    return block_sample_residual<kThreads>(target_row(k), draft_row_or_null(k), vocab_,
                                           ResidualParams{scale, w, lse_t, lse_d, onehot,
                                                          draft_probs},
                                           rng, *scratch);
  }
  __device__ int64_t sample_target(int64_t k, float scale, RngStream rng) {
    return block_row_sample<kThreads>(target_row(k), vocab_, scale, rng, *scratch);
  }
  __device__ int64_t argmax_target(int64_t k) {
    return block_row_argmax<kThreads>(target_row(k), vocab_, *scratch);
  }

  __device__ void emit(int64_t j, int64_t token) {
    if (leader()) out_tokens[j] = token;
  }
  __device__ void flag(int64_t k, int8_t f) {
    if (leader()) flags[k] = f;
  }
  __device__ void finish(int64_t n_accepted, int64_t n_emitted) {
    if (leader()) {
      *accepted = n_accepted;
      *num_emitted = n_emitted;
    }
  }
};

}  // namespace cuda
}  // namespace dspark
