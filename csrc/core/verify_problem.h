// Where each request's rows live: the padded and the ragged layout of design §1 behind one
// set of accessors, so one kernel body serves both. All offsets are int64 (B*K*V exceeds
// 2^31 at realistic sizes) and come from the tensors' strides, so views work. Index inputs
// (draft ids, counts, ragged offsets, seeds, stream offsets) are int32 or int64 as the
// caller holds them (vLLM holds int32): read through IndexArray, never copied.
#pragma once

#include <cstdint>

#include <c10/macros/Macros.h>

#include "verify_math.h"

namespace dspark {

// A read-only int32 or int64 array. The dtype test is one predictable branch per read; the
// kernels read a handful of indices per request, against V logits per row.
struct IndexArray {
  const void* ptr = nullptr;
  bool is_int32 = false;

  C10_HOST_DEVICE int64_t operator[](int64_t i) const {
    return is_int32 ? static_cast<int64_t>(static_cast<const int32_t*>(ptr)[i])
                    : static_cast<const int64_t*>(ptr)[i];
  }
  C10_HOST_DEVICE explicit operator bool() const { return ptr != nullptr; }
  // The array that starts at element n of this one.
  C10_HOST_DEVICE IndexArray shifted(int64_t n) const {
    return IndexArray{is_int32 ? static_cast<const void*>(static_cast<const int32_t*>(ptr) + n)
                               : static_cast<const void*>(static_cast<const int64_t*>(ptr) + n),
                      is_int32};
  }
};

// Bits of the CUDA input-error word (cuda/error_flags.cu): which value check the CPU op would
// have raised for. The CUDA kernels cannot raise without a host synchronisation, so they
// leave such a row empty and set the bit; dspark_ext.check_cuda_inputs() reads the word.
constexpr int kInputErrorRaggedEnds = 1;   // cu_num_draft[0] != 0 or its last entry != T
constexpr int kInputErrorCounts = 2;       // a row's num_draft or offsets out of range
constexpr int kInputErrorDraftIds = 4;     // a verified draft id outside [0, V)
constexpr int kInputErrorTemperature = 8;  // a temperature negative or not finite

// The value of a vocabulary id that a sparse draft row leaves out: logit -inf, probability 0.
template <typename scalar_t>
C10_HOST_DEVICE scalar_t sparse_draft_fill(bool probs) {
  return probs ? scalar_t(0.0f) : scalar_t(kNegInf);
}

// Columns [begin, W) step `stride` of a sparse draft row written into its dense row (which
// the caller filled with sparse_draft_fill): column j goes to id ids[j]; ids outside [0, V)
// are skipped (the CPU op refuses them; nothing is ever written out of bounds).
template <typename scalar_t>
C10_HOST_DEVICE void scatter_sparse_draft(const scalar_t* values, IndexArray ids, int64_t width,
                                          int64_t vocab, scalar_t* dense, int64_t begin,
                                          int64_t stride) {
  for (int64_t j = begin; j < width; j += stride) {
    const int64_t id = ids[j];
    if (id >= 0 && id < vocab) dense[id] = values[j];
  }
}

template <typename scalar_t>
struct VerifyProblem {
  // Inputs.
  const scalar_t* target = nullptr;    // padded [B, K+1, V] or ragged [T+B, V]; last dim dense
  const scalar_t* draft = nullptr;     // padded [B, K, W] or ragged [T, W]; null = one-hot
  bool draft_probs = false;            // draft holds probabilities q, not logits
  // Sparse draft rows: entry j of a draft row stands for vocabulary id draft_ids[row, j] and
  // every other id has logit -inf (probability 0): top-k Markov candidates, or a reduced
  // draft vocabulary's map (a broadcast view). Null: dense rows, W = V.
  IndexArray draft_ids;                // padded [B, K, W] or ragged [T, W]
  int64_t draft_width = 0;             // W
  int64_t ids_sb = 0, ids_sk = 0;      // strides (the ragged row stride in ids_sk)
  // Optional log-sum-exp of each draft row at its row's temperature, natural log, float32
  // (markov_sample's draft_lse), laid out like the flags; null = computed from the draft row.
  const float* draft_lse = nullptr;
  IndexArray draft_tokens;             // padded [B, K] or ragged [T]
  IndexArray num_draft;                // padded [B] or null (= K)
  // Ragged offsets; null = padded layout. [B+1] with a leading 0 (request b's drafts are
  // [cu[b], cu[b+1])), or with cu_inclusive vLLM's [B] inclusive ends ([cu[b-1], cu[b])).
  IndexArray cu_num_draft;
  bool cu_inclusive = false;
  const float* temperature = nullptr;  // [B]; null = every row greedy
  IndexArray seed;                     // [B]
  IndexArray offset;                   // [B]
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
  int* error_word = nullptr;           // CUDA only: the device's input-error word, or null

  C10_HOST_DEVICE bool ragged() const { return static_cast<bool>(cu_num_draft); }

  // This request's draft positions [start, end) in the flattened ragged arrays.
  C10_HOST_DEVICE int64_t ragged_start(int64_t b) const {
    return cu_inclusive ? (b == 0 ? 0 : cu_num_draft[b - 1]) : cu_num_draft[b];
  }
  C10_HOST_DEVICE int64_t ragged_end(int64_t b) const {
    return cu_inclusive ? cu_num_draft[b] : cu_num_draft[b + 1];
  }
  // The ragged offsets start at 0 and end at T. Rows whose own offsets are in range but
  // shifted by a wrong first entry would read other requests' rows: the CUDA kernel checks
  // both ends in every block and leaves every row empty if they are wrong.
  C10_HOST_DEVICE bool ragged_ends_ok() const {
    if (!ragged()) return true;
    const int64_t first = cu_inclusive ? 0 : cu_num_draft[0];
    const int64_t last = batch == 0 ? first : ragged_end(batch - 1);
    return first == 0 && last == num_tokens;
  }

  // The verified length l_r, or -1 when the ragged offsets of this row are inconsistent
  // (the CPU op rejects those up front; on CUDA the row is left empty, never read out of
  // bounds).
  C10_HOST_DEVICE int64_t row_num_draft(int64_t b) const {
    if (ragged()) {
      const int64_t lo = ragged_start(b), hi = ragged_end(b);
      if (lo < 0 || hi < lo || hi > num_tokens || hi - lo > max_draft) return -1;
      return hi - lo;
    }
    if (!num_draft) return max_draft;
    const int64_t l = num_draft[b];
    return (l < 0 || l > max_draft) ? -1 : l;
  }

  C10_HOST_DEVICE const scalar_t* target_row(int64_t b, int64_t k) const {
    return ragged() ? target + (ragged_start(b) + b + k) * target_sk
                    : target + b * target_sb + k * target_sk;
  }
  C10_HOST_DEVICE bool sparse_draft() const { return static_cast<bool>(draft_ids); }
  C10_HOST_DEVICE IndexArray ids_row(int64_t b, int64_t k) const {
    return draft_ids.shifted(ragged() ? (ragged_start(b) + k) * ids_sk : b * ids_sb + k * ids_sk);
  }
  C10_HOST_DEVICE const scalar_t* draft_row(int64_t b, int64_t k) const {
    return ragged() ? draft + (ragged_start(b) + k) * draft_sk
                    : draft + b * draft_sb + k * draft_sk;
  }
  C10_HOST_DEVICE int64_t draft_token(int64_t b, int64_t k) const {
    return ragged() ? draft_tokens[(ragged_start(b) + k) * tokens_sk]
                    : draft_tokens[b * tokens_sb + k * tokens_sk];
  }
  C10_HOST_DEVICE int64_t flag_index(int64_t b, int64_t k) const {
    return ragged() ? ragged_start(b) + k : b * max_draft + k;
  }
  // The caller's draft_lse of row (b, k) in the log2 units of verification (lse2 = lse *
  // log2(e)); only when draft_lse is set.
  C10_HOST_DEVICE float given_draft_lse2(int64_t b, int64_t k) const {
    return draft_lse[flag_index(b, k)] * kLog2e;
  }
  C10_HOST_DEVICE int64_t row_seed(int64_t b) const { return seed ? seed[b] : 0; }
  C10_HOST_DEVICE int64_t row_offset(int64_t b) const { return offset ? offset[b] : 0; }
  C10_HOST_DEVICE float row_temperature(int64_t b) const {
    return temperature == nullptr ? 0.0f : temperature[b];
  }
};

}  // namespace dspark
