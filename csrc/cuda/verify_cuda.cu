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
#include "../cuda_input_errors.h"
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

// Sparse draft rows (draft_ids) are written out densely by a kernel of their own first: the
// verification kernel reads its inputs through the read-only cache, so it cannot write them.
// One CTA per draft row (padded: b * K + k; ragged: the flattened row t).
constexpr int kDensifyThreads = 256;

template <typename scalar_t>
__global__ void __launch_bounds__(kDensifyThreads)
    densify_draft_kernel(const VerifyProblem<scalar_t> pb, scalar_t* dense) {
  const int64_t row = blockIdx.x;
  const scalar_t* values;
  IndexArray ids;
  if (pb.ragged()) {
    values = pb.draft + row * pb.draft_sk;
    ids = pb.draft_ids.shifted(row * pb.ids_sk);
  } else {
    const int64_t b = row / pb.max_draft, k = row % pb.max_draft;
    values = pb.draft_row(b, k);
    ids = pb.ids_row(b, k);
  }
  scalar_t* out = dense + row * pb.vocab;
  const scalar_t fill = sparse_draft_fill<scalar_t>(pb.draft_probs);
  for (int64_t v = threadIdx.x; v < pb.vocab; v += kDensifyThreads) out[v] = fill;
  __syncthreads();
  scatter_sparse_draft(values, ids, pb.draft_width, pb.vocab, out,
                       static_cast<int64_t>(threadIdx.x), int64_t{kDensifyThreads});
}

// The problem with its sparse draft rows replaced by dense ones in `workspace` (kept alive by
// the caller until the verification kernel has been queued).
template <typename scalar_t>
VerifyProblem<scalar_t> densified(VerifyProblem<scalar_t> pb, const at::Tensor& target,
                                  at::Tensor& workspace, cudaStream_t stream) {
  const int64_t rows = pb.ragged() ? pb.num_tokens : pb.batch * pb.max_draft;
  TORCH_CHECK(rows <= std::numeric_limits<int32_t>::max(), "dspark: ", rows,
              " sparse draft rows exceed the CUDA grid limit");
  workspace = at::empty({rows, pb.vocab}, target.options());
  scalar_t* dense = workspace.data_ptr<scalar_t>();
  if (rows > 0) {
    densify_draft_kernel<scalar_t>
        <<<static_cast<unsigned int>(rows), kDensifyThreads, 0, stream>>>(pb, dense);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  pb.draft = dense;
  pb.draft_ids = IndexArray{};
  pb.draft_width = pb.vocab;
  if (pb.ragged()) {
    pb.draft_sk = pb.vocab;
  } else {
    pb.draft_sb = pb.max_draft * pb.vocab;
    pb.draft_sk = pb.vocab;
  }
  return pb;
}

template <typename scalar_t>
void launch_verify(VerifyArgs& args) {
  VerifyProblem<scalar_t> pb = make_problem<scalar_t>(args);
  if (pb.batch == 0) return;  // a zero-sized grid is a launch error
  TORCH_CHECK(pb.batch <= std::numeric_limits<int32_t>::max(), "dspark: batch of ", pb.batch,
              " requests exceeds the CUDA grid limit");
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  at::Tensor workspace;
  if (pb.sparse_draft() && pb.draft != nullptr) pb = densified(pb, args.target, workspace, stream);
  pb.error_word = cuda_input_error_word(args.target.get_device());
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
                                        const at::Tensor& cu_num_draft, int64_t max_num_draft,
                                        bool cu_inclusive) {
  const c10::cuda::OptionalCUDAGuard guard(cuda_device_of(target_logits));
  return dispatch(make_ragged_args("verify_greedy_ragged", target_logits, draft_tokens,
                                   DraftInput{}, cu_num_draft, max_num_draft, std::nullopt,
                                   std::nullopt, std::nullopt, false, cu_inclusive));
}

VerifyOutputs rejection_sample_cuda(const at::Tensor& target_logits,
                                    const at::Tensor& draft_tokens,
                                    const std::optional<at::Tensor>& draft_logits,
                                    const at::Tensor& temperature, const at::Tensor& seed,
                                    const at::Tensor& offset,
                                    const std::optional<at::Tensor>& num_draft, bool block,
                                    const std::optional<at::Tensor>& draft_probs,
                                   const std::optional<at::Tensor>& draft_lse,
                                   const std::optional<at::Tensor>& draft_ids) {
  const c10::cuda::OptionalCUDAGuard guard(cuda_device_of(target_logits));
  return dispatch(make_padded_args("rejection_sample", target_logits, draft_tokens,
                                   DraftInput::of("rejection_sample", draft_logits, draft_probs),
                                   num_draft, temperature, seed, offset, block, draft_lse,
                                   draft_ids));
}

VerifyOutputs rejection_sample_ragged_cuda(const at::Tensor& target_logits,
                                           const at::Tensor& draft_tokens,
                                           const std::optional<at::Tensor>& draft_logits,
                                           const at::Tensor& cu_num_draft, int64_t max_num_draft,
                                           const at::Tensor& temperature, const at::Tensor& seed,
                                           const at::Tensor& offset, bool block,
                                           const std::optional<at::Tensor>& draft_probs,
                                          const std::optional<at::Tensor>& draft_lse,
                                          const std::optional<at::Tensor>& draft_ids,
                                          bool cu_inclusive) {
  const c10::cuda::OptionalCUDAGuard guard(cuda_device_of(target_logits));
  return dispatch(make_ragged_args(
      "rejection_sample_ragged", target_logits, draft_tokens,
      DraftInput::of("rejection_sample_ragged", draft_logits, draft_probs), cu_num_draft,
      max_num_draft, temperature, seed, offset, block, cu_inclusive, draft_lse,
      draft_ids));
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
