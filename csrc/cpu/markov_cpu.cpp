// CPU kernel of markov_sample: per step one [B, r] x [r, V] product for all rows (ATen/BLAS)
// giving the bias, then the fused pass of cpu/markov_pass.h over fixed vocabulary segments of
// every row (ATen parallel_for over (row, segment) tasks), merged per row in segment order, so
// results do not depend on the thread count. Besides the outputs only a float32 [B, V] bias
// buffer is allocated (and a float32 copy of W2 when it is bfloat16).
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../markov_args.h"
#include "../markov_head.h"
#include "markov_pass.h"

namespace dspark {
namespace cpu {
namespace {

constexpr int64_t kSegment = 8 * kChunk;  // lanes per task: a multiple of kChunk

template <typename scalar_t>
void run_markov(MarkovArgs& a) {
  const at::Tensor w2t = a.w2.to(at::kFloat).t();  // [r, V]
  at::Tensor bias = at::empty({a.batch, a.vocab}, a.base.options().dtype(at::kFloat));
  const int64_t segs = (a.vocab + kSegment - 1) / kSegment;
  std::vector<SegmentResult> parts(static_cast<size_t>(a.batch * segs));
  const float* temperature = a.temperature.const_data_ptr<float>();
  const int64_t* seed = a.seed.const_data_ptr<int64_t>();
  const int64_t* offset = a.offset.const_data_ptr<int64_t>();
  const bool teacher = a.teacher.has_value();
  const scalar_t* base = a.base.const_data_ptr<scalar_t>();
  const int64_t sb = a.base.stride(0), sk = a.base.stride(1);
  scalar_t* z = a.logits.data_ptr<scalar_t>();
  float* lse = a.lse.data_ptr<float>();
  int64_t* tokens = a.tokens.data_ptr<int64_t>();
  const float* bias_p = bias.const_data_ptr<float>();
  const int64_t B = a.batch, K = a.steps, V = a.vocab;

  run_markov_steps(a, [&](const at::Tensor& u, int64_t k) {
    at::mm_out(bias, u, w2t);
    at::parallel_for(0, B * segs, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / segs, sg = t % segs;
        MarkovRowMode mode = markov_row_mode(temperature[b]);
        mode.sample = mode.sample && !teacher;  // teacher-forced: no sampling
        const RngStream rng = markov_stream(seed[b], offset[b], k);
        parts[t] = markov_segment(base + b * sb + k * sk, bias_p + b * V, z + (b * K + k) * V,
                                  sg * kSegment, std::min(V, (sg + 1) * kSegment), mode, rng);
      }
    });
    for (int64_t b = 0; b < B; ++b) {
      SoftmaxStats st{kNegInf, 0.0f};
      ArgMax best = ArgMax::empty();
      for (int64_t sg = 0; sg < segs; ++sg) {
        st = stats_merge(st, parts[b * segs + sg].stats);
        best.merge(parts[b * segs + sg].best);
      }
      lse[b * K + k] = stats_lse(st);
      if (!teacher) tokens[b * K + k] = best.index;
    }
  });
}

MarkovOutputs markov_sample_cpu(const at::Tensor& base_logits, const at::Tensor& anchor_tokens,
                                const at::Tensor& w1, const at::Tensor& w2,
                                const at::Tensor& temperature, const at::Tensor& seed,
                                const at::Tensor& offset, c10::string_view head,
                                const std::optional<at::Tensor>& hidden,
                                const std::optional<at::Tensor>& head_weight,
                                const std::optional<at::Tensor>& head_bias,
                                const std::optional<at::Tensor>& conf_weight,
                                const std::optional<at::Tensor>& conf_bias,
                                const std::optional<at::Tensor>& teacher_tokens) {
  MarkovArgs a = make_markov_args(base_logits, anchor_tokens, w1, w2, temperature, seed, offset,
                                  std::string(head), hidden, head_weight, head_bias, conf_weight,
                                  conf_bias, teacher_tokens);
  if (a.batch == 0) return a.outputs();
  AT_DISPATCH_SWITCH(a.base.scalar_type(), "dspark_markov_cpu",
                     AT_DISPATCH_CASE(at::kFloat, [&] { run_markov<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kBFloat16, [&] { run_markov<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kHalf, [&] { run_markov<scalar_t>(a); }));
  return a.outputs();
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(dspark, CPU, m) { m.impl("markov_sample", &cpu::markov_sample_cpu); }

}  // namespace dspark
