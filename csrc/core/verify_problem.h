// Where each request's rows live: the padded and the ragged layout of design §1 behind one
// set of accessors, so one kernel body serves both. All offsets are int64 (B*K*V exceeds
// 2^31 at realistic sizes) and come from the tensors' strides, so views work.
#pragma once

#include <cstdint>

#include <c10/macros/Macros.h>

namespace dspark {

template <typename scalar_t>
struct VerifyProblem {
  // Inputs.
  const scalar_t* target = nullptr;    // padded [B, K+1, V] or ragged [T+B, V]; last dim dense
  const scalar_t* draft = nullptr;     // padded [B, K, V] or ragged [T, V]; null = one-hot
  bool draft_probs = false;            // draft holds probabilities q, not logits
  const int64_t* draft_tokens = nullptr;  // padded [B, K] or ragged [T]
  const int64_t* num_draft = nullptr;  // padded [B] or null (= K)
  const int64_t* cu_num_draft = nullptr;  // ragged [B+1]; null = padded layout
  const float* temperature = nullptr;  // [B]; null = every row greedy
  const int64_t* seed = nullptr;       // [B]
  const int64_t* offset = nullptr;     // [B]
  int64_t batch = 0;
  int64_t max_draft = 0;               // K (padded) or max_num_draft (ragged)
  int64_t vocab = 0;
  int64_t num_tokens = 0;              // ragged T
  // Strides in elements. Padded: (b, k) strides; ragged: the row stride is in *_sk.
  int64_t target_sb = 0, target_sk = 0;
  int64_t draft_sb = 0, draft_sk = 0;
  int64_t tokens_sb = 0, tokens_sk = 0;
  bool block_method = false;
  // Outputs (contiguous, written by the kernel).
  int64_t* accepted = nullptr;         // [B]
  int64_t* out_tokens = nullptr;       // [B, max_draft + 1]
  int64_t* num_emitted = nullptr;      // [B]
  int8_t* accept_flags = nullptr;      // padded [B, K] or ragged [T]

  C10_HOST_DEVICE bool ragged() const { return cu_num_draft != nullptr; }

  // Start of this request's draft positions in the flattened ragged arrays.
  C10_HOST_DEVICE int64_t ragged_start(int64_t b) const { return cu_num_draft[b]; }

  // The verified length l_r, or -1 when the ragged offsets of this row are inconsistent
  // (the CPU op rejects those up front; on CUDA the row is left empty, never read out of
  // bounds).
  C10_HOST_DEVICE int64_t row_num_draft(int64_t b) const {
    if (ragged()) {
      const int64_t lo = cu_num_draft[b], hi = cu_num_draft[b + 1];
      if (lo < 0 || hi < lo || hi > num_tokens || hi - lo > max_draft) return -1;
      return hi - lo;
    }
    if (num_draft == nullptr) return max_draft;
    const int64_t l = num_draft[b];
    return (l < 0 || l > max_draft) ? -1 : l;
  }

  C10_HOST_DEVICE const scalar_t* target_row(int64_t b, int64_t k) const {
    return ragged() ? target + (cu_num_draft[b] + b + k) * target_sk
                    : target + b * target_sb + k * target_sk;
  }
  C10_HOST_DEVICE const scalar_t* draft_row(int64_t b, int64_t k) const {
    return ragged() ? draft + (cu_num_draft[b] + k) * draft_sk
                    : draft + b * draft_sb + k * draft_sk;
  }
  C10_HOST_DEVICE int64_t draft_token(int64_t b, int64_t k) const {
    return ragged() ? draft_tokens[(cu_num_draft[b] + k) * tokens_sk]
                    : draft_tokens[b * tokens_sb + k * tokens_sk];
  }
  C10_HOST_DEVICE int64_t flag_index(int64_t b, int64_t k) const {
    return ragged() ? cu_num_draft[b] + k : b * max_draft + k;
  }
  C10_HOST_DEVICE float row_temperature(int64_t b) const {
    return temperature == nullptr ? 0.0f : temperature[b];
  }
};

}  // namespace dspark
