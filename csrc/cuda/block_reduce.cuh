// Block-wide reductions that hand the SAME result to every thread of the block.
//
// Why broadcast: every thread runs the shared per-request control flow (core/verify_row.h) and
// branches on reduction results (accept / reject, which token). If threads saw different
// values the block would diverge and later __syncthreads would deadlock, so the result must
// be bit-identical in all threads, not merely "lane 0 has it".
//
// How: a warp butterfly, lane 0 of each warp parks its partial in shared memory, and then
// every thread folds the warp partials itself, in warp order. Because all threads fold the
// same values in the same order, they get the same bits even for operations that are not
// associative in floating point (stats_merge, float sums).
//
// Contract: every thread of the block must call each reduction (uniform control flow) and
// blockDim.x must be kThreads, a multiple of 32.
#pragma once

#include <cstdint>

#include "../core/verify_math.h"

namespace dspark {
namespace cuda {

constexpr unsigned kFullMask = 0xFFFFFFFFu;
constexpr int kWarpSize = 32;

// Lane-to-lane moves of each value type the verification passes reduce.
__device__ __forceinline__ float shfl_xor(float v, int mask) {
  return __shfl_xor_sync(kFullMask, v, mask);
}
__device__ __forceinline__ SoftmaxStats shfl_xor(SoftmaxStats v, int mask) {
  return SoftmaxStats{__shfl_xor_sync(kFullMask, v.max, mask),
                      __shfl_xor_sync(kFullMask, v.sum, mask)};
}
__device__ __forceinline__ ArgMax shfl_xor(ArgMax v, int mask) {
  const long long i = __shfl_xor_sync(kFullMask, static_cast<long long>(v.index), mask);
  return ArgMax{__shfl_xor_sync(kFullMask, v.key, mask), static_cast<int64_t>(i)};
}

struct SumOp {
  __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
};
template <bool kBase2>  // natural base (Markov head) or base 2 (verification)
struct StatsOp {
  __device__ __forceinline__ SoftmaxStats operator()(SoftmaxStats a, SoftmaxStats b) const {
    return stats_merge_base<kBase2>(a, b);
  }
};
// ArgMax::merge is an exact selection (larger key, then lower index), so the reduction tree
// cannot change which index wins: ties go to the lowest index as on the CPU.
struct ArgMaxOp {
  __device__ __forceinline__ ArgMax operator()(ArgMax a, const ArgMax& b) const {
    a.merge(b);
    return a;
  }
};

// Shared scratch for one reduction at a time: one slot per warp, sized for the largest type.
struct alignas(16) ReduceScratch {
  static constexpr int kMaxWarps = 32;
  unsigned char bytes[kMaxWarps * sizeof(ArgMax)];

  template <typename T>
  __device__ __forceinline__ T* slots() {
    static_assert(sizeof(T) <= sizeof(ArgMax), "ReduceScratch slot too small");
    return reinterpret_cast<T*>(bytes);
  }
};

template <int kThreads, typename T, class Op>
__device__ __forceinline__ T block_reduce_broadcast(T v, Op op, ReduceScratch& scratch) {
  static_assert(kThreads % kWarpSize == 0, "block size must be a whole number of warps");
  constexpr int kWarps = kThreads / kWarpSize;
  static_assert(kWarps <= ReduceScratch::kMaxWarps, "block too large for ReduceScratch");
#pragma unroll
  for (int mask = kWarpSize / 2; mask >= 1; mask >>= 1) v = op(v, shfl_xor(v, mask));
  T* slots = scratch.slots<T>();
  const int warp = static_cast<int>(threadIdx.x) / kWarpSize;
  const int lane = static_cast<int>(threadIdx.x) % kWarpSize;
  // The previous reduction's readers may still be folding the slots we are about to reuse.
  __syncthreads();
  if (lane == 0) slots[warp] = v;
  __syncthreads();
  T r = slots[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) r = op(r, slots[w]);
  return r;
}

template <int kThreads>
__device__ __forceinline__ float block_sum(float v, ReduceScratch& s) {
  return block_reduce_broadcast<kThreads>(v, SumOp{}, s);
}
template <int kThreads, bool kBase2 = false>
__device__ __forceinline__ SoftmaxStats block_stats(SoftmaxStats v, ReduceScratch& s) {
  return block_reduce_broadcast<kThreads>(v, StatsOp<kBase2>{}, s);
}
template <int kThreads>
__device__ __forceinline__ ArgMax block_argmax(ArgMax v, ReduceScratch& s) {
  return block_reduce_broadcast<kThreads>(v, ArgMaxOp{}, s);
}

}  // namespace cuda
}  // namespace dspark
