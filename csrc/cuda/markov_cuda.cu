// CUDA backend of markov_sample: the head math runs as ATen ops (markov_head.cpp) and every
// step launches the two kernels of markov_step.cuh, all on the current stream: no host
// synchronisation. Rows whose anchor lies outside [0, V) or whose temperature is negative or
// not finite (checked and raised on CPU) get token -1 at every position instead.
#include <cstdint>
#include <limits>

#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../markov_args.h"
#include "../markov_head.h"
#include "markov_step.cuh"

namespace dspark {
namespace cuda {
namespace {

using markov::StepParams;
using markov::TilePartial;

// Dynamic shared memory a block of the current device may opt into.
size_t device_smem_limit() {
  int device = 0, limit = 0;
  C10_CUDA_CHECK(cudaGetDevice(&device));
  C10_CUDA_CHECK(
      cudaDeviceGetAttribute(&limit, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  return static_cast<size_t>(limit);
}

template <typename scalar_t, typename w_t>
void run_markov(MarkovArgs& a) {
  StepParams<scalar_t, w_t> p;
  p.base = a.base.const_data_ptr<scalar_t>();
  p.base_sb = a.base.stride(0);
  p.base_sk = a.base.stride(1);
  p.w2 = a.w2.const_data_ptr<w_t>();
  p.z = a.logits.data_ptr<scalar_t>();
  p.set_rows(a);
  p.tiles = (a.vocab + markov::kTileV - 1) / markov::kTileV;
  TORCH_CHECK(a.batch <= std::numeric_limits<int32_t>::max() &&
                  p.tiles <= std::numeric_limits<int32_t>::max(),
              "markov_sample: batch or vocabulary too large for the CUDA grid");
  const at::Tensor parts = at::empty(
      {static_cast<int64_t>(a.batch * p.tiles * sizeof(TilePartial))},
      a.base.options().dtype(at::kByte));
  p.parts = reinterpret_cast<TilePartial*>(parts.data_ptr());
  const markov::TilePlan plan = markov::choose_tile_plan(a.rank, device_smem_limit());
  TORCH_CHECK(plan != markov::TilePlan::kTooLarge, "markov_sample: Markov rank r = ", a.rank,
              " needs ", markov::tile_smem_bytes(a.rank, false), " bytes of shared memory per "
              "block, more than this device allows");
  const bool stage_u = plan == markov::TilePlan::kStageU;
  const size_t smem = markov::tile_smem_bytes(a.rank, stage_u);
  auto* kernel = stage_u ? markov::markov_tile_kernel<scalar_t, w_t, true>
                         : markov::markov_tile_kernel<scalar_t, w_t, false>;
  C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  run_markov_steps(a, [&](const at::Tensor& u, int64_t k) {
    p.u = u.const_data_ptr<float>();
    p.k = k;
    kernel<<<static_cast<unsigned int>(p.tiles), markov::kThreads, smem, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    markov::markov_finish_kernel<scalar_t, w_t>
        <<<static_cast<unsigned int>(p.batch), markov::kFinishThreads, 0, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

template <typename scalar_t>
void dispatch_weights(MarkovArgs& a) {
  if (a.w2.scalar_type() == at::kBFloat16) {
    run_markov<scalar_t, c10::BFloat16>(a);
  } else {
    run_markov<scalar_t, float>(a);
  }
}

MarkovOutputs markov_sample_cuda(const at::Tensor& base_logits, const at::Tensor& anchor_tokens,
                                 const at::Tensor& w1, const at::Tensor& w2,
                                 const at::Tensor& temperature, const at::Tensor& seed,
                                 const at::Tensor& offset, c10::string_view head,
                                 const std::optional<at::Tensor>& hidden,
                                 const std::optional<at::Tensor>& head_weight,
                                 const std::optional<at::Tensor>& head_bias,
                                 const std::optional<at::Tensor>& conf_weight,
                                 const std::optional<at::Tensor>& conf_bias,
                                 const std::optional<at::Tensor>& teacher_tokens) {
  std::optional<c10::Device> dev;
  if (base_logits.is_cuda()) dev = base_logits.device();
  const c10::cuda::OptionalCUDAGuard guard(dev);
  MarkovArgs a = make_markov_args(base_logits, anchor_tokens, w1, w2, temperature, seed, offset,
                                  std::string(head), hidden, head_weight, head_bias, conf_weight,
                                  conf_bias, teacher_tokens);
  if (a.batch == 0) return a.outputs();
  AT_DISPATCH_SWITCH(a.base.scalar_type(), "dspark_markov_cuda",
                     AT_DISPATCH_CASE(at::kFloat, [&] { dispatch_weights<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kBFloat16, [&] { dispatch_weights<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kHalf, [&] { dispatch_weights<scalar_t>(a); }));
  return a.outputs();
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(dspark, CUDA, m) { m.impl("markov_sample", &cuda::markov_sample_cuda); }

}  // namespace dspark
