// The hardware-aware prefix scheduler (design §6; paper Algorithm 1 and §5.2), header-only so
// that the CPU executor (cpu/schedule_cpu.cpp: a lazy k-way merge of the rows) and the CUDA
// executor (cuda/schedule_cuda.cu: a block-wide sort) run the same decisions with the same
// arithmetic. dspark_ext/reference_schedule.py is the plain-Python statement of the same
// algorithm; all three agree exactly (IEEE double, same operation order).
//
// Definitions (request r, draft position j = 1..K as in the paper; code stores j-1):
//   a[r, j] = c[r, 1] * ... * c[r, j]        prefix survival, double, left-to-right products
//   candidates E = {(r, j) : a[r, j] > 0, j <= max_len[r]}
//   admission path = E sorted by descending a, ties: smaller j first, then smaller r
//   after admitting the first n candidates of the path:
//       B_n = R + n,  tau_n = R + a_1 + ... + a_n (added in path order),  Theta_n = tau_n SPS(B_n)
// Because a[r, .] is non-increasing in j (rounding is monotone, c <= 1) and ties go to the
// smaller j, candidate (r, j) always precedes (r, j + 1): any prefix of the path is a set of
// per-request prefixes, so l_r = the number of admitted candidates of request r.
//
// Modes (the scan over the path):
//   causal   (Algorithm 1): admit while Theta_n > Theta_best, stop at the first candidate that
//            does not improve it. Lossless: whether (r, j) is admitted depends only on
//            candidates that precede it, none of which depends on draft token j of request r.
//   global   (no early stop): the arg-max of Theta_n over the whole path (first maximum).
//            NOT lossless on the current step's confidences (paper Appendix A); it is what the
//            asynchronous scheduler runs on confidences from two steps earlier to get a capacity.
//   capacity (asynchronous, §5.2): admit the first min(capacity, |path|) candidates.
// A global budget max_batch_tokens truncates the path to max_batch_tokens - R candidates.
#pragma once

#include <cstdint>

#include "inline.h"

namespace dspark {

enum class ScheduleMode : int32_t { kCausal = 0, kGlobal = 1, kCapacity = 2 };

// Result of one scan: admitted draft tokens n, tau_n and Theta_n at the chosen point.
struct ScheduleOutcome {
  int64_t admitted;
  double expected_tokens;
  double throughput;
};

// Confidence as the kernels use it. The CPU op rejects values outside [0, 1] and NaN up
// front; the CUDA op cannot read values without a host sync, so there NaN reads as 0 (the
// row's candidates end) and values outside [0, 1] are clamped.
DSPARK_FN double sanitize_confidence(double c) {
  return c >= 0.0 ? (c <= 1.0 ? c : 1.0) : 0.0;  // NaN >= 0 is false -> 0
}

// Per-request verification cap: min(max_len[r], K); out-of-range values (CUDA only; the CPU
// op rejects them) are clamped into [0, K].
DSPARK_FN int64_t sanitize_max_len(int64_t max_len, int64_t k) {
  return max_len < 0 ? 0 : (max_len > k ? k : max_len);
}

// Prefix survival of one request: a[i * a_stride] (i = j - 1) for i < K, from confidences
// c[i * stride]. Returns the number of candidates of the row, i.e. the length of the prefix
// with a > 0 and j <= cap (a is non-increasing, so the candidates of a row are always a
// prefix of its positions).
template <typename conf_t>
DSPARK_FN int64_t row_prefix_survival(const conf_t* c, int64_t stride, int64_t k, int64_t cap,
                                      double* a, int64_t a_stride) {
  double acc = 1.0;
  int64_t count = 0;
  for (int64_t i = 0; i < k; ++i) {
    acc = acc * sanitize_confidence(static_cast<double>(c[i * stride]));
    a[i * a_stride] = acc;
    if (acc > 0.0 && i < cap) count = i + 1;
  }
  return count;
}

// Strict total order of the admission path: does candidate 1 precede candidate 2?
// (descending a, then smaller j, then smaller r.)
DSPARK_FN bool candidate_before(double a1, int64_t j1, int64_t r1, double a2, int64_t j2,
                                int64_t r2) {
  if (a1 != a2) return a1 > a2;
  if (j1 != j2) return j1 < j2;
  return r1 < r2;
}

// Candidates a scan may visit: the path length, truncated by the token budget
// (max_batch_tokens < 0 means no budget) and, in capacity mode, by the capacity.
DSPARK_FN int64_t schedule_limit(int64_t path_len, int64_t num_requests,
                                 int64_t max_batch_tokens, ScheduleMode mode, int64_t capacity) {
  int64_t limit = path_len;
  if (max_batch_tokens >= 0 && max_batch_tokens - num_requests < limit)
    limit = max_batch_tokens - num_requests;
  if (mode == ScheduleMode::kCapacity && capacity < limit) limit = capacity;
  return limit < 0 ? 0 : limit;
}

// The scan over the admission path. `next_a()` returns the a of the next candidate of the path
// (called at most `limit` times, in path order); `sps` is the table SPS(B) indexed by the batch
// token count, read at R..R+limit.
template <typename Path, typename sps_t>
DSPARK_FN ScheduleOutcome schedule_scan(Path& path, int64_t num_requests, const sps_t* sps,
                                        int64_t limit, ScheduleMode mode) {
  double tau = static_cast<double>(num_requests);
  int64_t batch = num_requests;
  if (mode == ScheduleMode::kCapacity) {
    for (int64_t i = 0; i < limit; ++i) tau = tau + path.next_a();
    return {limit, tau, tau * static_cast<double>(sps[batch + limit])};
  }
  ScheduleOutcome best{0, tau, tau * static_cast<double>(sps[batch])};
  for (int64_t i = 0; i < limit; ++i) {
    tau = tau + path.next_a();
    batch += 1;
    const double theta = tau * static_cast<double>(sps[batch]);
    if (theta > best.throughput) {
      best = {i + 1, tau, theta};
    } else if (mode == ScheduleMode::kCausal) {
      break;  // the early stop that keeps Algorithm 1 lossless
    }
  }
  return best;
}

}  // namespace dspark
