// CUDA backend of markov_sample_topk (core/markov_topk.h), all on the current stream:
// 1. candidates of every (row, position) by ATen: torch.topk of the base logits (NaN ranked as
//    -inf), then put into candidate order (value descending, ties to the lower id) by a sort on
//    the ids followed by a stable sort on the values. torch.topk may keep a different member
//    of an exact tie at the k-th place than the CPU's selection; the law verified is always
//    the one the drafts were drawn from (the ids are an output).
// 2. per step one CTA per row: u_k in shared memory, each thread the bias of its candidates
//    (W2[c] . u, sequential float32 FMAs), z, s and the key, then a block reduction of the
//    softmax statistics and the arg-max. Rows whose anchor or temperature is invalid get token
//    -1, as in the dense kernel.
#include <cstdint>
#include <limits>

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../core/markov_topk.h"
#include "../markov_args.h"
#include "../markov_head.h"
#include "block_reduce.cuh"
#include "markov_step.cuh"

namespace dspark {
namespace cuda {
namespace {

constexpr int kTopkThreads = 256;

template <typename scalar_t, typename w_t>
struct TopkStep : markov::RowIO {
  const float* cand_base;  // [B, K, topk] float32, candidate order
  const int64_t* ids;      // [B, K, topk]
  const w_t* w2;           // [V, r]
  scalar_t* z;             // [B, K, topk]
  int64_t topk;
};

template <typename scalar_t, typename w_t>
__global__ void __launch_bounds__(kTopkThreads) markov_topk_step_kernel(
    const TopkStep<scalar_t, w_t> p) {
  extern __shared__ float us[];  // [r]
  __shared__ ReduceScratch scratch;
  const int64_t b = blockIdx.x;
  for (int64_t i = threadIdx.x; i < p.rank; i += kTopkThreads) us[i] = p.u[b * p.rank + i];
  __syncthreads();
  MarkovRowMode mode = markov_row_mode(p.temperature[b]);
  mode.sample = mode.sample && !p.teacher;
  const RngStream rng = markov_stream(p.seed[b], p.offset[b], p.k);
  const int64_t row = b * p.steps + p.k;
  SoftmaxStats st{kNegInf, 0.0f};
  ArgMax am = ArgMax::empty();
  for (int64_t j = threadIdx.x; j < p.topk; j += kTopkThreads) {
    const int64_t c = p.ids[row * p.topk + j];
    const w_t* w = p.w2 + c * p.rank;
    float acc = 0.0f;
    for (int64_t i = 0; i < p.rank; ++i) acc = fma_f(markov::w_to_float(w + i), us[i], acc);
    const float zr = markov::store_z(p.z + row * p.topk + j, p.cand_base[row * p.topk + j] + acc);
    const float s = masked_scaled(zr, mode.inv_t);
    st = stats_merge(st, SoftmaxStats{s, s == kNegInf ? 0.0f : 1.0f});
    am.offer(markov_topk_key(s, mode, rng, c), c);
  }
  st = block_stats<kTopkThreads>(st, scratch);
  am = block_argmax<kTopkThreads>(am, scratch);
  if (threadIdx.x == 0) {
    const int64_t a = p.anchor[b];
    const bool bad = a < 0 || a >= p.vocab || !markov_temperature_ok(p.temperature[b]);
    p.lse[row] = stats_lse(st);
    if (!p.teacher) p.tokens[row] = bad ? int64_t{-1} : am.index;
  }
}

// (candidate base values float32, candidate ids int64), both [B, K, topk] in candidate order.
std::pair<at::Tensor, at::Tensor> candidates(const at::Tensor& base, int64_t topk) {
  const float inf = std::numeric_limits<float>::infinity();
  const at::Tensor ranked = at::nan_to_num(base.to(at::kFloat), -inf, inf, -inf);
  auto [values, ids] = at::topk(ranked, topk, -1, /*largest=*/true, /*sorted=*/true);
  auto [ids_by_id, perm] = at::sort(ids, -1);
  const at::Tensor values_by_id = values.gather(-1, perm);
  auto [ordered, perm2] = at::sort(values_by_id, /*stable=*/true, -1, /*descending=*/true);
  return {ordered.contiguous(), ids_by_id.gather(-1, perm2).contiguous()};
}

template <typename scalar_t, typename w_t>
void run_markov_topk(MarkovArgs& a) {
  auto [cand_base, ids] = candidates(a.base, a.topk);
  a.ids.copy_(ids);
  TopkStep<scalar_t, w_t> p;
  p.set_rows(a);
  p.cand_base = cand_base.const_data_ptr<float>();
  p.ids = a.ids.const_data_ptr<int64_t>();
  p.w2 = a.w2.const_data_ptr<w_t>();
  p.z = a.logits.data_ptr<scalar_t>();
  p.topk = a.topk;
  TORCH_CHECK(a.batch <= std::numeric_limits<int32_t>::max(),
              "markov_sample: batch too large for the CUDA grid");
  const size_t smem = static_cast<size_t>(a.rank) * sizeof(float);  // r <= 512: 2 KB
  const cudaStream_t stream = at::cuda::getCurrentCUDAStream();
  run_markov_steps(a, [&](const at::Tensor& u, int64_t k) {
    p.u = u.const_data_ptr<float>();
    p.k = k;
    markov_topk_step_kernel<scalar_t, w_t>
        <<<static_cast<unsigned int>(a.batch), kTopkThreads, smem, stream>>>(p);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

template <typename scalar_t>
void dispatch_weights(MarkovArgs& a) {
  if (a.w2.scalar_type() == at::kBFloat16) {
    run_markov_topk<scalar_t, c10::BFloat16>(a);
  } else {
    run_markov_topk<scalar_t, float>(a);
  }
}

MarkovTopkOutputs markov_sample_topk_cuda(
    const at::Tensor& base_logits, const at::Tensor& anchor_tokens, const at::Tensor& w1,
    const at::Tensor& w2, const at::Tensor& temperature, const at::Tensor& seed,
    const at::Tensor& offset, c10::string_view head, const std::optional<at::Tensor>& hidden,
    const std::optional<at::Tensor>& head_weight, const std::optional<at::Tensor>& head_bias,
    const std::optional<at::Tensor>& conf_weight, const std::optional<at::Tensor>& conf_bias,
    const std::optional<at::Tensor>& teacher_tokens, int64_t topk) {
  std::optional<c10::Device> dev;
  if (base_logits.is_cuda()) dev = base_logits.device();
  const c10::cuda::OptionalCUDAGuard guard(dev);
  MarkovArgs a = make_markov_args(base_logits, anchor_tokens, w1, w2, temperature, seed, offset,
                                  std::string(head), hidden, head_weight, head_bias, conf_weight,
                                  conf_bias, teacher_tokens, checked_topk(topk));
  if (a.batch == 0) return topk_outputs(a);
  AT_DISPATCH_SWITCH(a.base.scalar_type(), "dspark_markov_topk_cuda",
                     AT_DISPATCH_CASE(at::kFloat, [&] { dispatch_weights<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kBFloat16, [&] { dispatch_weights<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kHalf, [&] { dispatch_weights<scalar_t>(a); }));
  return topk_outputs(a);
}

}  // namespace
}  // namespace cuda

TORCH_LIBRARY_IMPL(dspark, CUDA, m) {
  m.impl("markov_sample_topk", &cuda::markov_sample_topk_cuda);
}

}  // namespace dspark
