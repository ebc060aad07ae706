// CUDA kernel of the scheduler op: one thread block for the whole batch (R x K confidences
// are a few thousand numbers). The block computes every request's prefix survival
// (core/schedule.h) into an array indexed j * R + r, bitonic-sorts the indices by descending
// a (ties: smaller index, i.e. smaller j then smaller r: the path order of design §6), then one
// thread runs the shared schedule_scan over the sorted path (serial double sums in path order,
// so the result is bit-identical to the CPU op and the Python reference) and the block writes
// the per-request lengths. Same arguments and outputs as the CPU kernel
// (cpu/schedule_cpu.cpp). Values are not validated on the host (that would synchronise): the
// kernel sanitises them instead (core/schedule.h: NaN confidences read as 0, others clamp to
// [0, 1]; max_len clamps to [0, K]; a negative capacity reads as 0).
//
// The sort buffers (8 + 4 bytes per padded candidate) live in shared memory when they fit in
// the default 48 KiB (up to 4096 candidates, e.g. R = 256, K = 16), else in a global scratch
// tensor (same code, generic addressing; __syncthreads orders global memory within a block).
#include <cstdint>
#include <type_traits>

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../core/schedule.h"
#include "../schedule_args.h"

namespace dspark {
namespace cuda {
namespace {

constexpr int kScheduleThreads = 1024;
constexpr int64_t kSharedBytes = 48 * 1024;

// Admission path order of padded candidate indices (padding and non-candidates hold a < 0).
__device__ __forceinline__ bool path_before(const double* a, uint32_t x, uint32_t y) {
  const double ax = a[x], ay = a[y];
  return ax > ay || (ax == ay && x < y);
}

struct SortedPath {
  const double* a;
  const uint32_t* order;
  int64_t cursor;
  __host__ __device__ double next_a() { return a[order[cursor++]]; }
};

template <typename conf_t, typename sps_t>
__global__ void __launch_bounds__(kScheduleThreads)
    schedule_kernel(const conf_t* __restrict__ conf, const sps_t* __restrict__ sps,
                    const int64_t* __restrict__ max_len, const int64_t* __restrict__ capacity,
                    int64_t rows, int64_t k, int64_t padded, int64_t max_batch_tokens,
                    ScheduleMode mode, unsigned char* global_scratch, int64_t* lengths,
                    int64_t* num_admitted, double* expected_tokens, double* throughput) {
  extern __shared__ __align__(16) unsigned char shared_scratch[];
  unsigned char* scratch = global_scratch != nullptr ? global_scratch : shared_scratch;
  double* a = reinterpret_cast<double*>(scratch);
  uint32_t* order = reinterpret_cast<uint32_t*>(scratch + padded * sizeof(double));
  __shared__ unsigned long long path_len;
  __shared__ long long admitted;
  const int tid = threadIdx.x;
  if (tid == 0) path_len = 0;
  __syncthreads();

  // Prefix survival, stored at j * R + r; non-candidates and padding get -1 (sorted last).
  unsigned long long local = 0;
  for (int64_t r = tid; r < rows; r += blockDim.x) {
    const int64_t cap = max_len != nullptr ? sanitize_max_len(max_len[r], k) : k;
    const int64_t count = row_prefix_survival(conf + r * k, 1, k, cap, a + r, rows);
    for (int64_t i = count; i < k; ++i) a[i * rows + r] = -1.0;
    local += static_cast<unsigned long long>(count);
    lengths[r] = 0;
  }
  for (int64_t i = rows * k + tid; i < padded; i += blockDim.x) a[i] = -1.0;
  for (int64_t i = tid; i < padded; i += blockDim.x) order[i] = static_cast<uint32_t>(i);
  if (local != 0) atomicAdd(&path_len, local);
  __syncthreads();

  // Bitonic sort of the indices into path order.
  for (int64_t size = 2; size <= padded; size <<= 1) {
    for (int64_t stride = size >> 1; stride > 0; stride >>= 1) {
      for (int64_t i = tid; i < padded; i += blockDim.x) {
        const int64_t partner = i ^ stride;
        if (partner > i) {
          const uint32_t x = order[i], y = order[partner];
          const bool ascending = (i & size) == 0;
          if (ascending ? path_before(a, y, x) : path_before(a, x, y)) {
            order[i] = y;
            order[partner] = x;
          }
        }
      }
      __syncthreads();
    }
  }

  if (tid == 0) {
    const int64_t cap = capacity != nullptr ? capacity[0] : 0;
    const int64_t limit = schedule_limit(static_cast<int64_t>(path_len), rows,
                                         max_batch_tokens, mode, cap);
    SortedPath path{a, order, 0};
    const ScheduleOutcome out = schedule_scan(path, rows, sps, limit, mode);
    admitted = out.admitted;
    *num_admitted = out.admitted;
    *expected_tokens = out.expected_tokens;
    *throughput = out.throughput;
  }
  __syncthreads();
  // The admitted candidates form per-request prefixes: l_r counts request r's.
  for (int64_t i = tid; i < admitted; i += blockDim.x) {
    const int64_t r = static_cast<int64_t>(order[i]) % rows;
    atomicAdd(reinterpret_cast<unsigned long long*>(lengths + r), 1ULL);
  }
}

ScheduleOutputs schedule_prefix_cuda(const at::Tensor& confidence, const at::Tensor& sps,
                                     const std::optional<at::Tensor>& max_len,
                                     const std::optional<at::Tensor>& capacity,
                                     std::optional<int64_t> max_batch_tokens, bool early_stop) {
  ScheduleArgs args = make_schedule_args("schedule_prefix", confidence, sps, max_len, capacity,
                                         max_batch_tokens, early_stop);
  const c10::cuda::CUDAGuard guard(confidence.device());
  const int64_t n = args.num_requests * args.max_draft;
  int64_t padded = 1;
  while (padded < n) padded <<= 1;
  const int64_t bytes = padded * static_cast<int64_t>(sizeof(double) + sizeof(uint32_t));
  const bool in_shared = bytes <= kSharedBytes;
  at::Tensor scratch;
  if (!in_shared) scratch = at::empty({bytes}, confidence.options().dtype(at::kByte));
  unsigned char* global_scratch = in_shared ? nullptr : scratch.data_ptr<unsigned char>();
  const int64_t* ml = args.max_len ? args.max_len->const_data_ptr<int64_t>() : nullptr;
  const int64_t* cap = args.capacity ? args.capacity->const_data_ptr<int64_t>() : nullptr;
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  const size_t smem = in_shared ? static_cast<size_t>(bytes) : 0;

  AT_DISPATCH_FLOATING_TYPES(args.confidence.scalar_type(), "dspark_schedule_cuda", [&] {
    using conf_t = scalar_t;
    auto launch = [&](auto sps_ptr) {
      using sps_t = std::remove_const_t<std::remove_pointer_t<decltype(sps_ptr)>>;
      schedule_kernel<conf_t, sps_t><<<1, kScheduleThreads, smem, stream>>>(
          args.confidence.const_data_ptr<conf_t>(), sps_ptr, ml, cap, args.num_requests,
          args.max_draft, padded, args.max_batch_tokens, args.mode, global_scratch,
          args.lengths.data_ptr<int64_t>(), args.num_admitted.data_ptr<int64_t>(),
          args.expected_tokens.data_ptr<double>(), args.throughput.data_ptr<double>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    };
    if (args.sps.scalar_type() == at::kDouble) {
      launch(args.sps.const_data_ptr<double>());
    } else {
      launch(args.sps.const_data_ptr<float>());
    }
  });
  return args.outputs();
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(dspark, CUDA, m) { m.impl("schedule_prefix", &cuda::schedule_prefix_cuda); }

}  // namespace dspark
