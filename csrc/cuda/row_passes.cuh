// Block-wide passes over one vocabulary row: the reductions core/verify_row.h asks its
// executor for, CUDA edition of cpu/row_passes.h.
//
// Each thread walks a strided share of the row in 16-byte units (coalesced: consecutive
// threads read consecutive units), folds its share into a private accumulator with the shared
// per-element math of core/verify_math.h, and a block reduction broadcasts the row result to
// every thread. Per-element values (probabilities, residual weights, race and Gumbel keys,
// Philox words) are bit-identical to the CPU kernel's; only the order of float additions in
// the row sums differs. Nothing per-vocabulary is stored: probabilities are recomputed from
// the logits and the row's log-sum-exp where needed.
//
// Every function here contains block reductions: all threads of the block must call it.
#pragma once

#include <cstdint>

#include "../core/fastmath.h"
#include "../core/philox.h"
#include "../core/verify_math.h"
#include "block_reduce.cuh"
#include "vec_load.cuh"

namespace dspark {
namespace cuda {

// Units handled back to back per thread before any is consumed, to keep more loads in flight
// (one block per request: with few requests, per-block memory parallelism sets the speed).
constexpr int kUnroll = 2;

// Calls fn(u) for this thread's units u = threadIdx.x + i * kThreads, in increasing u (so a
// thread meets vocabulary ids in increasing order, as ArgMax ties expect).
template <int kThreads, class Fn>
__device__ __forceinline__ void for_each_unit(int64_t units, Fn&& fn) {
  int64_t u = threadIdx.x;
  for (; u + (kUnroll - 1) * kThreads < units; u += kUnroll * kThreads) {
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) fn(u + j * kThreads);
  }
  for (; u < units; u += kThreads) fn(u);
}

template <typename scalar_t>
__device__ __forceinline__ int64_t unit_count(int64_t vocab) {
  constexpr int kLanes = Unit<scalar_t>::kLanes;
  return (vocab + kLanes - 1) / kLanes;
}

// Philox words of unit u: lane v = u * kLanes + i uses word v % 4 of group v / 4, exactly the
// CPU layout, with one Philox call per 4 lanes. Groups fit in 32 bits since V < 2^31.
template <typename scalar_t>
__device__ __forceinline__ void unit_words(const RngStream& rng, int64_t u,
                                           uint32_t (&w)[Unit<scalar_t>::kLanes]) {
  constexpr int kGroups = Unit<scalar_t>::kPhiloxGroups;
#pragma unroll
  for (int g = 0; g < kGroups; ++g) {
    const Philox4x32Out o = rng.words(static_cast<uint32_t>(u * kGroups + g));
#pragma unroll
    for (int j = 0; j < 4; ++j) w[4 * g + j] = o.v[j];
  }
}

// log-sum-exp of the scaled row (-inf when fully masked), one read of the row. Each thread
// keeps an online (max, sum) pair, rescaling only when its max grows.
template <int kThreads, typename scalar_t>
__device__ float block_row_lse(const scalar_t* row, int64_t vocab, float inv_t,
                               ReduceScratch& scratch) {
  constexpr int kLanes = Unit<scalar_t>::kLanes;
  const bool aligned = aligned16(row);
  float m = kNegInf, s = 0.0f;
  for_each_unit<kThreads>(unit_count<scalar_t>(vocab), [&](int64_t u) {
    float x[kLanes];
    load_unit(row, aligned, u * kLanes, vocab, x);
    float um = kNegInf;
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      x[i] = masked_scaled(x[i], inv_t);
      um = max_f(x[i], um);
    }
    if (um > m) {
      s = (m == kNegInf) ? 0.0f : s * exp_f(m - um);
      m = um;
    }
    if (m != kNegInf) {
#pragma unroll
      for (int i = 0; i < kLanes; ++i) s += exp_f(x[i] - m);  // masked lanes add exp(-inf) = 0
    }
  });
  return stats_lse(block_stats<kThreads>(SoftmaxStats{m, s}, scratch));
}

// Greedy arg-max of the raw (masked) logits, lowest index on ties; -1 when all are masked.
template <int kThreads, typename scalar_t>
__device__ int64_t block_row_argmax(const scalar_t* row, int64_t vocab, ReduceScratch& scratch) {
  constexpr int kLanes = Unit<scalar_t>::kLanes;
  const bool aligned = aligned16(row);
  ArgMax best = ArgMax::empty();
  for_each_unit<kThreads>(unit_count<scalar_t>(vocab), [&](int64_t u) {
    float x[kLanes];
    const int64_t v0 = u * kLanes;
    load_unit(row, aligned, v0, vocab, x);
#pragma unroll
    for (int i = 0; i < kLanes; ++i) best.offer(masked_scaled(x[i], 1.0f), v0 + i);
  });
  return block_argmax<kThreads>(best, scratch).index;
}

// Gumbel-max sample of softmax(row * inv_t); -1 only for a fully masked row.
template <int kThreads, typename scalar_t>
__device__ int64_t block_row_sample(const scalar_t* row, int64_t vocab, float inv_t,
                                    const RngStream& rng, ReduceScratch& scratch) {
  constexpr int kLanes = Unit<scalar_t>::kLanes;
  const bool aligned = aligned16(row);
  ArgMax best = ArgMax::empty();
  for_each_unit<kThreads>(unit_count<scalar_t>(vocab), [&](int64_t u) {
    float x[kLanes];
    uint32_t w[kLanes];
    const int64_t v0 = u * kLanes;
    load_unit(row, aligned, v0, vocab, x);
    unit_words<scalar_t>(rng, u, w);
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      best.offer(gumbel_key(masked_scaled(x[i], inv_t), neg_log_uniform(w[i])), v0 + i);
    }
  });
  return block_argmax<kThreads>(best, scratch).index;
}

// The two rows of a residual pass: p from the target row, q from the draft row or, for
// one-hot drafts (draft == nullptr), the delta at `onehot`.
template <typename scalar_t>
struct ResidualRows {
  const scalar_t* target;
  const scalar_t* draft;  // nullptr: one-hot drafts
  int64_t vocab;
  float inv_t, w, lse_t, lse_d;
  int64_t onehot;

  // p and q of the lanes of unit u, as the CPU's chunk_probs computes them.
  __device__ __forceinline__ void probs(int64_t u, bool t_aligned, bool d_aligned,
                                        float (&p)[Unit<scalar_t>::kLanes],
                                        float (&q)[Unit<scalar_t>::kLanes]) const {
    constexpr int kLanes = Unit<scalar_t>::kLanes;
    const int64_t v0 = u * kLanes;
    load_unit(target, t_aligned, v0, vocab, p);
    if (draft != nullptr) load_unit(draft, d_aligned, v0, vocab, q);
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      p[i] = prob(masked_scaled(p[i], inv_t), lse_t);
      if (draft != nullptr) {
        q[i] = prob(masked_scaled(q[i], inv_t), lse_d);
      } else {
        const int64_t v = v0 + i;
        q[i] = (v < vocab && v == onehot) ? 1.0f : 0.0f;
      }
    }
  }
};

// Z = sum_x max(w p(x) - q(x), 0).
template <int kThreads, typename scalar_t>
__device__ float block_residual_mass(const ResidualRows<scalar_t>& rr, ReduceScratch& scratch) {
  constexpr int kLanes = Unit<scalar_t>::kLanes;
  const bool t_aligned = aligned16(rr.target);
  const bool d_aligned = rr.draft != nullptr && aligned16(rr.draft);
  float z = 0.0f;
  for_each_unit<kThreads>(unit_count<scalar_t>(rr.vocab), [&](int64_t u) {
    float p[kLanes], q[kLanes];
    rr.probs(u, t_aligned, d_aligned, p, q);
#pragma unroll
    for (int i = 0; i < kLanes; ++i) z += residual_weight(rr.w, p[i], q[i]);
  });
  return block_sum<kThreads>(z, scratch);
}

// Exponential race over max(w p - q, 0), with the same race over p as the fallback when the
// residual has no mass (as on the CPU, both share each lane's 1/E); -1 only when the target
// row is fully masked.
template <int kThreads, typename scalar_t>
__device__ int64_t block_sample_residual(const ResidualRows<scalar_t>& rr, const RngStream& rng,
                                         ReduceScratch& scratch) {
  constexpr int kLanes = Unit<scalar_t>::kLanes;
  const bool t_aligned = aligned16(rr.target);
  const bool d_aligned = rr.draft != nullptr && aligned16(rr.draft);
  ArgMaxPair best{ArgMax::empty(), ArgMax::empty()};  // (residual, fallback p)
  for_each_unit<kThreads>(unit_count<scalar_t>(rr.vocab), [&](int64_t u) {
    float p[kLanes], q[kLanes];
    uint32_t w[kLanes];
    rr.probs(u, t_aligned, d_aligned, p, q);
    unit_words<scalar_t>(rng, u, w);
    const int64_t v0 = u * kLanes;
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      const float inv_e = inv_neg_log_uniform(w[i]);
      best.first.offer(race_key(residual_weight(rr.w, p[i], q[i]), inv_e), v0 + i);
      best.second.offer(race_key(p[i], inv_e), v0 + i);
    }
  });
  const ArgMaxPair r = block_argmax_pair<kThreads>(best, scratch);
  return r.first.index >= 0 ? r.first.index : r.second.index;
}

}  // namespace cuda
}  // namespace dspark
