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

template <typename scalar_t, typename w_t>
void run_markov(MarkovArgs& a) {
  StepParams<scalar_t, w_t> p;
  p.base = a.base.const_data_ptr<scalar_t>();
  p.base_sb = a.base.stride(0);
  p.base_sk = a.base.stride(1);
  p.w2 = a.w2.const_data_ptr<w_t>();
  p.z = a.logits.data_ptr<scalar_t>();
  p.temperature = a.temperature.const_data_ptr<float>();
  p.seed = a.seed.const_data_ptr<int64_t>();
  p.offset = a.offset.const_data_ptr<int64_t>();
  p.anchor = a.anchor.const_data_ptr<int64_t>();
  p.tokens = a.tokens.data_ptr<int64_t>();
  p.lse = a.lse.data_ptr<float>();
  p.batch = a.batch;
  p.steps = a.steps;
  p.vocab = a.vocab;
  p.rank = a.rank;
  p.tiles = (a.vocab + markov::kTileV - 1) / markov::kTileV;
  p.teacher = a.teacher.has_value();
  TORCH_CHECK(a.batch <= std::numeric_limits<int32_t>::max() &&
                  p.tiles <= std::numeric_limits<int32_t>::max(),
              "markov_sample: batch or vocabulary too large for the CUDA grid");
  const at::Tensor parts = at::empty(
      {static_cast<int64_t>(a.batch * p.tiles * sizeof(TilePartial))},
      a.base.options().dtype(at::kByte));
  p.parts = reinterpret_cast<TilePartial*>(parts.data_ptr());
  const size_t smem = markov::tile_smem_bytes(a.rank);
  C10_CUDA_CHECK(cudaFuncSetAttribute(markov::markov_tile_kernel<scalar_t, w_t>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize,
                                      static_cast<int>(smem)));
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  run_markov_steps(a, [&](const at::Tensor& u, int64_t k) {
    p.u = u.const_data_ptr<float>();
    p.k = k;
    markov::markov_tile_kernel<scalar_t, w_t>
        <<<static_cast<unsigned int>(p.tiles), markov::kThreads, smem, stream>>>(p);
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
