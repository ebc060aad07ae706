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
// The passes are __noinline__: the per-request control flow that calls them keeps many values
// live, and inlining every pass into it pushed the kernel past 64 registers (so one block per
// SM). As calls, the live state is saved once per pass, outside the vocabulary loops.
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

// Units loaded back to back per thread before any is consumed, so several 16-byte loads are
// in flight per thread (one block per request: with few requests, per-block memory
// parallelism sets the speed). The sampling passes run at most once per request and carry
// Philox state, so they take one unit at a time.
constexpr int kStreamUnroll = 4;
constexpr int kSampleUnroll = 1;

// Where a pass reads its units from: one logits row, or a target row with its draft row.
// load_fast may only be used when fast_units() > 0 and u < fast_units(): aligned rows, full
// units, so it is a straight run of vector loads the compiler can issue together.
template <typename scalar_t>
struct OneRow {
  static constexpr int kLanes = Unit<scalar_t>::kLanes;
  using Raw = RawUnit;
  const scalar_t* row;
  int64_t vocab;
  bool aligned;

  __device__ OneRow(const scalar_t* r, int64_t v) : row(r), vocab(v), aligned(aligned16(r)) {}
  __device__ int64_t fast_units() const { return aligned ? vocab / kLanes : 0; }
  __device__ void load_fast(int64_t u, Raw& r) const { r = load_unit_vector(row, u * kLanes); }
  __device__ void load_checked(int64_t u, Raw& r) const {
    r = load_unit(row, aligned, u * kLanes, vocab);
  }
};

// kHasDraft = false: one-hot drafts, only the target row is read.
template <typename scalar_t, bool kHasDraft>
struct TwoRows {
  static constexpr int kLanes = Unit<scalar_t>::kLanes;
  struct Raw {
    RawUnit t, d;
  };
  const scalar_t* target;
  const scalar_t* draft;
  int64_t vocab;
  bool t_aligned, d_aligned;

  __device__ TwoRows(const scalar_t* t, const scalar_t* d, int64_t v)
      : target(t), draft(d), vocab(v), t_aligned(aligned16(t)),
        d_aligned(kHasDraft && aligned16(d)) {}
  __device__ int64_t fast_units() const {
    return (t_aligned && (!kHasDraft || d_aligned)) ? vocab / kLanes : 0;
  }
  __device__ void load_fast(int64_t u, Raw& r) const {
    r.t = load_unit_vector(target, u * kLanes);
    if constexpr (kHasDraft) r.d = load_unit_vector(draft, u * kLanes);
  }
  __device__ void load_checked(int64_t u, Raw& r) const {
    r.t = load_unit(target, t_aligned, u * kLanes, vocab);
    if constexpr (kHasDraft) r.d = load_unit(draft, d_aligned, u * kLanes, vocab);
  }
};

// Calls fn(u, raw) for this thread's units u = threadIdx.x + i * kThreads, in increasing u, so
// a thread meets vocabulary ids in increasing order (ThreadArgMax relies on it).
template <int kThreads, int kUnroll, class Src, class Fn>
__device__ __forceinline__ void stream_row(const Src& src, Fn&& fn) {
  constexpr int kLanes = Src::kLanes;
  const int64_t units = (src.vocab + kLanes - 1) / kLanes;
  const int64_t fast_units = src.fast_units();
  int64_t u = threadIdx.x;
  for (; u + (kUnroll - 1) * kThreads < fast_units; u += kUnroll * kThreads) {
    typename Src::Raw r[kUnroll];
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) src.load_fast(u + j * kThreads, r[j]);
#pragma unroll
    for (int j = 0; j < kUnroll; ++j) fn(u + j * kThreads, r[j]);
  }
  // Leftover full units, the partial tail unit, and whole misaligned rows.
  for (; u < units; u += kThreads) {
    typename Src::Raw r;
    src.load_checked(u, r);
    fn(u, r);
  }
}

// One thread's running arg-max. Ids arrive in increasing order, so a strict '>' keeps the
// lowest id among equal keys, and -inf (masked) keys are never taken: the same selection as
// ArgMax::offer. The id is kept in 32 bits (V < 2^31; only in-vocabulary lanes, whose keys are
// finite, are ever taken) to save registers in the Philox-heavy sampling loops.
struct ThreadArgMax {
  float key = kNegInf;
  int32_t index = -1;

  __device__ __forceinline__ void offer(float k, int64_t i) {
    if (k > key) {
      key = k;
      index = static_cast<int32_t>(i);
    }
  }
  __device__ __forceinline__ ArgMax get() const { return ArgMax{key, index}; }
};

// log2-sum-exp2 of the scaled row (-inf when fully masked), one read of the row. Each thread
// keeps an online (max, sum) pair, rescaling only when its max grows.
template <int kThreads, typename scalar_t>
__device__ __noinline__ float block_row_lse(const scalar_t* row, int64_t vocab, float scale,
                                            ReduceScratch& scratch) {
  using Src = OneRow<scalar_t>;
  constexpr int kLanes = Src::kLanes;
  float m = kNegInf, s = 0.0f;
  stream_row<kThreads, kStreamUnroll>(Src(row, vocab), [&](int64_t, const RawUnit& r) {
    float x[kLanes];
    float um = kNegInf;
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      x[i] = masked_scaled(lane<scalar_t>(r, i), scale);
      um = max_f(x[i], um);
    }
    if (um > m) {
      s = (m == kNegInf) ? 0.0f : s * exp2_f(m - um);
      m = um;
    }
    if (m != kNegInf) {
#pragma unroll
      for (int i = 0; i < kLanes; ++i) s += exp2_le127_lanes(x[i] - m);  // <= 0; masked: 0
    }
  });
  return stats2_lse(block_stats<kThreads, /*kBase2=*/true>(SoftmaxStats{m, s}, scratch));
}

// Greedy arg-max of the raw (masked) logits, lowest index on ties; -1 when all are masked.
template <int kThreads, typename scalar_t>
__device__ __noinline__ int64_t block_row_argmax(const scalar_t* row, int64_t vocab,
                                                 ReduceScratch& scratch) {
  using Src = OneRow<scalar_t>;
  constexpr int kLanes = Src::kLanes;
  ThreadArgMax best;
  stream_row<kThreads, kStreamUnroll>(Src(row, vocab), [&](int64_t u, const RawUnit& r) {
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      best.offer(masked_scaled(lane<scalar_t>(r, i), 1.0f), u * kLanes + i);
    }
  });
  return block_argmax<kThreads>(best.get(), scratch).index;
}

// The sampling passes draw Philox words per unit: lane v = u * kLanes + i uses word v % 4 of
// group v / 4 (group u * kGroups + i / 4, word i % 4), exactly the CPU layout, with one
// Philox call per 4 lanes. Groups fit in 32 bits since V < 2^31.

// Gumbel-max sample of the row's softmax (log2 units); -1 only for a fully masked row.
template <int kThreads, typename scalar_t>
__device__ __noinline__ int64_t block_row_sample(const scalar_t* row, int64_t vocab, float scale,
                                                 RngStream rng, ReduceScratch& scratch) {
  using Src = OneRow<scalar_t>;
  constexpr int kLanes = Src::kLanes;
  ThreadArgMax best;
  constexpr int kGroups = Unit<scalar_t>::kPhiloxGroups;
  stream_row<kThreads, kSampleUnroll>(Src(row, vocab), [&](int64_t u, const RawUnit& r) {
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const Philox4x32Out o = rng.words(static_cast<uint32_t>(u * kGroups + g));
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int i = 4 * g + j;
        const float scaled = masked_scaled(lane<scalar_t>(r, i), scale);
        best.offer(gumbel2_key(scaled, neg_log2_uniform(o.v[j])), u * kLanes + i);
      }
    }
  });
  return block_argmax<kThreads>(best.get(), scratch).index;
}

// What a residual pass needs besides the rows: max(w p - q, 0) with p = softmax(target / T),
// q = softmax(draft / T), the draft row itself (draft_probs: core/verify_math.h draft_prob)
// or, for one-hot drafts, the delta at `onehot`.
struct ResidualParams {
  float scale, w, lse_t, lse_d;
  int64_t onehot;
  bool draft_probs;
};

// How a pass reads q (a template parameter: each form is its own loop).
enum class DraftForm { kOneHot, kLogits, kProbs };

template <DraftForm kForm>
constexpr bool kReadsDraft = kForm != DraftForm::kOneHot;

// p and q of lane i of unit u, as the CPU's chunk_probs computes them.
template <typename scalar_t, DraftForm kForm>
__device__ __forceinline__ void lane_probs(
    const ResidualParams& rp, int64_t u, int i, int64_t vocab,
    const typename TwoRows<scalar_t, kReadsDraft<kForm>>::Raw& r, float& p, float& q) {
  p = prob(masked_scaled(lane<scalar_t>(r.t, i), rp.scale), rp.lse_t);
  if constexpr (kForm == DraftForm::kProbs) {
    q = draft_prob(lane<scalar_t>(r.d, i));
  } else if constexpr (kForm == DraftForm::kLogits) {
    q = prob(masked_scaled(lane<scalar_t>(r.d, i), rp.scale), rp.lse_d);
  } else {
    const int64_t v = u * Unit<scalar_t>::kLanes + i;
    q = (v < vocab && v == rp.onehot) ? 1.0f : 0.0f;
  }
}

template <int kThreads, typename scalar_t, DraftForm kForm>
__device__ __forceinline__ float residual_mass_pass(const scalar_t* target, const scalar_t* draft,
                                                    int64_t vocab, const ResidualParams& rp,
                                                    ReduceScratch& scratch) {
  using Src = TwoRows<scalar_t, kReadsDraft<kForm>>;
  constexpr int kLanes = Src::kLanes;
  float z = 0.0f;
  stream_row<kThreads, kStreamUnroll>(Src(target, draft, vocab),
                                      [&](int64_t u, const typename Src::Raw& r) {
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      float p, q;
      lane_probs<scalar_t, kForm>(rp, u, i, vocab, r, p, q);
      z += residual_weight(rp.w, p, q);
    }
  });
  return block_sum<kThreads>(z, scratch);
}

// Z = sum_x max(w p(x) - q(x), 0). draft == nullptr: one-hot drafts.
template <int kThreads, typename scalar_t>
__device__ __noinline__ float block_residual_mass(const scalar_t* target, const scalar_t* draft,
                                                  int64_t vocab, ResidualParams rp,
                                                  ReduceScratch& scratch) {
  if (draft == nullptr) {
    return residual_mass_pass<kThreads, scalar_t, DraftForm::kOneHot>(target, draft, vocab, rp,
                                                                      scratch);
  }
  return rp.draft_probs
             ? residual_mass_pass<kThreads, scalar_t, DraftForm::kProbs>(target, draft, vocab,
                                                                         rp, scratch)
             : residual_mass_pass<kThreads, scalar_t, DraftForm::kLogits>(target, draft, vocab,
                                                                          rp, scratch);
}

// One exponential race over the row: weights max(w p - q, 0) (the residual), or p alone
// (kOverP, the fallback). Keys are race_key(weight, 1/E) with each lane's Philox E, as on
// the CPU.
template <int kThreads, typename scalar_t, DraftForm kForm, bool kOverP>
__device__ __forceinline__ int64_t race_pass(const scalar_t* target, const scalar_t* draft,
                                             int64_t vocab, const ResidualParams& rp,
                                             const RngStream& rng, ReduceScratch& scratch) {
  using Src = TwoRows<scalar_t, kReadsDraft<kForm>>;
  constexpr int kLanes = Src::kLanes;
  constexpr int kGroups = Unit<scalar_t>::kPhiloxGroups;
  ThreadArgMax best;
  stream_row<kThreads, kSampleUnroll>(Src(target, draft, vocab),
                                      [&](int64_t u, const typename Src::Raw& r) {
    // One Philox group at a time keeps only four words live.
#pragma unroll
    for (int g = 0; g < kGroups; ++g) {
      const Philox4x32Out o = rng.words(static_cast<uint32_t>(u * kGroups + g));
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const int i = 4 * g + j;
        float p, q;
        lane_probs<scalar_t, kForm>(rp, u, i, vocab, r, p, q);
        const float weight = kOverP ? p : residual_weight(rp.w, p, q);
        best.offer(race_key(weight, inv_neg_log2_uniform(o.v[j])), u * kLanes + i);
      }
    }
  });
  return block_argmax<kThreads>(best.get(), scratch).index;
}

// Exponential race over max(w p - q, 0); when the residual has no mass (only by rounding),
// the same race over p, with the same E per lane, as the CPU's fallback. That second pass
// runs only in that rare case instead of racing both in every pass (registers: the fused
// version spilled at 64). -1 only when the target row is fully masked. draft == nullptr:
// one-hot drafts.
template <int kThreads, typename scalar_t>
__device__ __noinline__ int64_t block_sample_residual(const scalar_t* target,
                                                      const scalar_t* draft, int64_t vocab,
                                                      ResidualParams rp, RngStream rng,
                                                      ReduceScratch& scratch) {
  constexpr DraftForm kOneHot = DraftForm::kOneHot;
  int64_t y;
  if (draft == nullptr) {
    y = race_pass<kThreads, scalar_t, kOneHot, false>(target, draft, vocab, rp, rng, scratch);
  } else if (rp.draft_probs) {
    y = race_pass<kThreads, scalar_t, DraftForm::kProbs, false>(target, draft, vocab, rp, rng,
                                                                scratch);
  } else {
    y = race_pass<kThreads, scalar_t, DraftForm::kLogits, false>(target, draft, vocab, rp, rng,
                                                                 scratch);
  }
  if (y < 0) {  // broadcast value: the whole block takes this branch or none of it does
    y = race_pass<kThreads, scalar_t, kOneHot, true>(target, nullptr, vocab, rp, rng, scratch);
  }
  return y;
}

}  // namespace cuda
}  // namespace dspark
