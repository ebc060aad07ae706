// CUDA kernels of the verification ops: one thread block per request, every thread running
// the shared per-request algorithm (core/verify_row.h) with the block-wide executor of
// row_exec.cuh. Same arguments and outputs as the CPU kernels (cpu/verify_cpu.cpp).
//
// Value checks that would need a host synchronisation (ragged offsets, num_draft range,
// temperatures, draft ids) are not made on the host: a row with an invalid value is left empty
// (accepted = num_emitted = 0, tokens -1, flags untested) and nothing is read out of bounds.
#include <cstdint>
#include <limits>

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "verify_kernel.cuh"
#include "../verify_args.h"
#include "block_reduce.cuh"

namespace dspark {
namespace cuda {
namespace {

// 16 warps per request: enough loads in flight to stream a 150k-entry row. Two resident
// blocks per SM caps registers at 64 per thread; the streaming passes (log-sum-exp, arg-max,
// residual mass) fit without spills because they are separate calls (row_passes.cuh), the
// once-per-request sampling passes spill a few words, and the per-request control flow saves
// its state around the calls.
constexpr int kThreads = 512;
constexpr int kMinBlocksPerSm = 2;

template <typename scalar_t>
__global__ void __launch_bounds__(kThreads, kMinBlocksPerSm)
    verify_rows_kernel(const VerifyProblem<scalar_t> pb) {
  __shared__ ReduceScratch scratch;
  verify_request<scalar_t, kThreads>(pb, static_cast<int64_t>(blockIdx.x), scratch);
}

template <typename scalar_t>
void launch_verify(VerifyArgs& args) {
  const VerifyProblem<scalar_t> pb = make_problem<scalar_t>(args);
  if (pb.batch == 0) return;  // a zero-sized grid is a launch error
  TORCH_CHECK(pb.batch <= std::numeric_limits<int32_t>::max(), "dspark: batch of ", pb.batch,
              " requests exceeds the CUDA grid limit");
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  verify_rows_kernel<scalar_t>
      <<<static_cast<unsigned int>(pb.batch), kThreads, 0, stream>>>(pb);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Only the logits dtypes verify_args accepts; each gets its own kernel (unit width differs).
VerifyOutputs dispatch(VerifyArgs args) {
  AT_DISPATCH_SWITCH(args.target.scalar_type(), "dspark_verify_cuda",
                     AT_DISPATCH_CASE(at::kFloat, [&] { launch_verify<scalar_t>(args); })
                     AT_DISPATCH_CASE(at::kBFloat16, [&] { launch_verify<scalar_t>(args); })
                     AT_DISPATCH_CASE(at::kHalf, [&] { launch_verify<scalar_t>(args); }));
  return args.outputs();
}

// Make the inputs' device current before anything allocates or launches. A CPU target_logits
// mixed with CUDA arguments also lands here; the argument checks then report the device
// mismatch by name, so no guard is set for it.
std::optional<c10::Device> cuda_device_of(const at::Tensor& target_logits) {
  if (!target_logits.is_cuda()) return std::nullopt;
  return target_logits.device();
}

VerifyOutputs verify_greedy_cuda(const at::Tensor& target_logits, const at::Tensor& draft_tokens,
                                 const std::optional<at::Tensor>& num_draft) {
  const c10::cuda::OptionalCUDAGuard guard(cuda_device_of(target_logits));
  return dispatch(make_padded_args("verify_greedy", target_logits, draft_tokens, DraftInput{},
                                   num_draft, std::nullopt, std::nullopt, std::nullopt, false));
}

VerifyOutputs verify_greedy_ragged_cuda(const at::Tensor& target_logits,
                                        const at::Tensor& draft_tokens,
                                        const at::Tensor& cu_num_draft, int64_t max_num_draft) {
  const c10::cuda::OptionalCUDAGuard guard(cuda_device_of(target_logits));
  return dispatch(make_ragged_args("verify_greedy_ragged", target_logits, draft_tokens,
                                   DraftInput{}, cu_num_draft, max_num_draft, std::nullopt,
                                   std::nullopt, std::nullopt, false));
}

VerifyOutputs rejection_sample_cuda(const at::Tensor& target_logits,
                                    const at::Tensor& draft_tokens,
                                    const std::optional<at::Tensor>& draft_logits,
                                    const at::Tensor& temperature, const at::Tensor& seed,
                                    const at::Tensor& offset,
                                    const std::optional<at::Tensor>& num_draft, bool block,
                                    const std::optional<at::Tensor>& draft_probs) {
  const c10::cuda::OptionalCUDAGuard guard(cuda_device_of(target_logits));
  return dispatch(make_padded_args("rejection_sample", target_logits, draft_tokens,
                                   DraftInput::of("rejection_sample", draft_logits, draft_probs),
                                   num_draft, temperature, seed, offset, block));
}

VerifyOutputs rejection_sample_ragged_cuda(const at::Tensor& target_logits,
                                           const at::Tensor& draft_tokens,
                                           const std::optional<at::Tensor>& draft_logits,
                                           const at::Tensor& cu_num_draft, int64_t max_num_draft,
                                           const at::Tensor& temperature, const at::Tensor& seed,
                                           const at::Tensor& offset, bool block,
                                           const std::optional<at::Tensor>& draft_probs) {
  const c10::cuda::OptionalCUDAGuard guard(cuda_device_of(target_logits));
  return dispatch(make_ragged_args(
      "rejection_sample_ragged", target_logits, draft_tokens,
      DraftInput::of("rejection_sample_ragged", draft_logits, draft_probs), cu_num_draft,
      max_num_draft, temperature, seed, offset, block));
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(dspark, CUDA, m) {
  m.impl("verify_greedy", &cuda::verify_greedy_cuda);
  m.impl("verify_greedy_ragged", &cuda::verify_greedy_ragged_cuda);
  m.impl("rejection_sample", &cuda::rejection_sample_cuda);
  m.impl("rejection_sample_ragged", &cuda::rejection_sample_ragged_cuda);
}

}  // namespace dspark
