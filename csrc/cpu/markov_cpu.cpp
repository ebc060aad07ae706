// CPU kernel of markov_sample. Two executors of the same per-element math, chosen by batch:
// * batched (B > kSmallBatch): per step one [B, r] x [r, V] product for all rows (ATen/BLAS)
//   giving the bias, then the fused pass of cpu/markov_pass.h over fixed vocabulary segments
//   of every row (ATen parallel_for over (row, segment) tasks), merged per row in segment
//   order, so results do not depend on the thread count. Besides the outputs only a float32
//   [B, V] bias buffer is allocated (and a float32 copy of W2 when it is bfloat16);
// * small batch (cpu/markov_small.h): the bias lane by lane from W2 in its own dtype, inside
//   the same pass; the vanilla head's whole step loop natively per row (parallel over rows).
// Both merge a row's segments in the same order; they differ only in the bias's float32
// summation order (BLAS's or four-lane dot products).
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../markov_args.h"
#include "../markov_head.h"
#include "markov_pass.h"
#include "markov_small.h"

namespace dspark {
namespace cpu {
namespace {

constexpr int64_t kSegment = 8 * kChunk;  // lanes per task: a multiple of kChunk

// The per-row inputs and outputs of one step, shared by both executors.
template <typename scalar_t>
struct StepIO {
  explicit StepIO(MarkovArgs& a)
      : temperature(a.temperature.const_data_ptr<float>()),
        seed(a.seed.const_data_ptr<int64_t>()),
        offset(a.offset.const_data_ptr<int64_t>()),
        base(a.base.const_data_ptr<scalar_t>()),
        z(a.logits.data_ptr<scalar_t>()),
        lse(a.lse.data_ptr<float>()),
        tokens(a.tokens.data_ptr<int64_t>()),
        sb(a.base.stride(0)),
        sk(a.base.stride(1)),
        K(a.steps),
        V(a.vocab),
        teacher(a.teacher.has_value()) {}

  MarkovRowMode mode(int64_t b) const {
    MarkovRowMode m = markov_row_mode(temperature[b]);
    m.sample = m.sample && !teacher;  // teacher-forced: no sampling
    return m;
  }
  RngStream rng(int64_t b, int64_t k) const { return markov_stream(seed[b], offset[b], k); }
  const scalar_t* base_row(int64_t b, int64_t k) const { return base + b * sb + k * sk; }
  scalar_t* z_row(int64_t b, int64_t k) const { return z + (b * K + k) * V; }
  // Row b's merged result of step k: draft_lse, and the token unless teacher-forced.
  void finish(int64_t b, int64_t k, const SoftmaxStats& st, const ArgMax& best) const {
    lse[b * K + k] = stats_lse(st);
    if (!teacher) tokens[b * K + k] = best.index;
  }

  const float* temperature;
  const int64_t *seed, *offset;
  const scalar_t* base;
  scalar_t* z;
  float* lse;
  int64_t* tokens;
  int64_t sb, sk, K, V;
  bool teacher;
};

template <typename scalar_t>
void run_markov(MarkovArgs& a) {
  const at::Tensor w2t = a.w2.to(at::kFloat).t();  // [r, V]
  at::Tensor bias = at::empty({a.batch, a.vocab}, a.base.options().dtype(at::kFloat));
  const int64_t segs = (a.vocab + kSegment - 1) / kSegment;
  std::vector<SegmentResult> parts(static_cast<size_t>(a.batch * segs));
  const StepIO<scalar_t> io(a);
  const float* bias_p = bias.const_data_ptr<float>();
  const int64_t B = a.batch, V = a.vocab;

  run_markov_steps(a, [&](const at::Tensor& u, int64_t k) {
    at::mm_out(bias, u, w2t);
    at::parallel_for(0, B * segs, 1, [&](int64_t begin, int64_t end) {
      for (int64_t t = begin; t < end; ++t) {
        const int64_t b = t / segs, sg = t % segs;
        parts[t] = markov_segment(io.base_row(b, k), bias_p + b * V, io.z_row(b, k),
                                  sg * kSegment, std::min(V, (sg + 1) * kSegment), io.mode(b),
                                  io.rng(b, k));
      }
    });
    for (int64_t b = 0; b < B; ++b) {
      SoftmaxStats st{kNegInf, 0.0f};
      ArgMax best = ArgMax::empty();
      for (int64_t sg = 0; sg < segs; ++sg) {
        st = stats_merge(st, parts[b * segs + sg].stats);
        best.merge(parts[b * segs + sg].best);
      }
      io.finish(b, k, st, best);
    }
  });
}

// Rows up to which the lane-by-lane bias beats one GEMM over the batch (the GEMM reads W2
// once for all rows; the dot products once per row, in the weight's own dtype).
constexpr int64_t kSmallBatch = 4;

inline float weight_at(const at::Tensor& w, int64_t i) {
  return w.scalar_type() == at::kBFloat16 ? to_float(w.const_data_ptr<c10::BFloat16>()[i])
                                          : w.const_data_ptr<float>()[i];
}

// The generic step loop (any head) with the bias from dot products: no float32 copy of W2,
// no [B, V] GEMM.
template <typename scalar_t, typename w_t>
void run_markov_small(MarkovArgs& a) {
  const int64_t B = a.batch, V = a.vocab, r = a.rank;
  const w_t* w2 = a.w2.const_data_ptr<w_t>();
  std::vector<float> bias(static_cast<size_t>(B * V));
  const StepIO<scalar_t> io(a);
  run_markov_steps(a, [&](const at::Tensor& u, int64_t k) {
    const float* up = u.const_data_ptr<float>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        float* bb = bias.data() + b * V;
        bias_by_dots(w2, up + b * r, r, 0, V, bb);
        const SegmentResult res = markov_row_step(io.base_row(b, k), bb, io.z_row(b, k), V,
                                                  kSegment, io.mode(b), io.rng(b, k));
        io.finish(b, k, res.stats, res.best);
      }
    });
  });
}

// The vanilla head (u_k = e_k) with its confidence term, every step of a row natively: the
// same quantities as run_markov_steps computes with ATen ops, read and written in place.
template <typename scalar_t, typename w_t>
void run_markov_small_vanilla(MarkovArgs& a) {
  const int64_t B = a.batch, K = a.steps, V = a.vocab, r = a.rank, d = a.hidden_size;
  const w_t* w2 = a.w2.const_data_ptr<w_t>();
  const int64_t* anchor = a.anchor.const_data_ptr<int64_t>();
  const int64_t* teacher = a.teacher.has_value() ? a.teacher->const_data_ptr<int64_t>() : nullptr;
  const StepIO<scalar_t> io(a);
  // Confidence c_k = w . [h_k; e_k] + b: the hidden part for all steps at once (one product).
  const bool conf = a.conf_weight.has_value();
  at::Tensor conf_h, conf_e;
  if (conf) {
    const at::Tensor w = a.conf_weight->to(at::kFloat);
    conf_h = at::matmul(a.hidden->to(at::kFloat), w.narrow(0, 0, d));  // [B, K]
    if (a.conf_bias.has_value()) conf_h = conf_h + a.conf_bias->to(at::kFloat).reshape({});
    conf_h = conf_h.contiguous();
    if (a.conf_with_markov) conf_e = w.narrow(0, d, r).contiguous();
  }
  const float* ch = conf ? conf_h.const_data_ptr<float>() : nullptr;
  const float* ce = conf_e.defined() ? conf_e.const_data_ptr<float>() : nullptr;
  float* conf_out = conf ? a.conf.data_ptr<float>() : nullptr;
  at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> bias(static_cast<size_t>(V)), e(static_cast<size_t>(r));
    for (int64_t b = begin; b < end; ++b) {
      const MarkovRowMode mode = io.mode(b);
      int64_t x = anchor[b];
      for (int64_t k = 0; k < K; ++k) {
        // e_k = W1[x_{k-1}]; zero for an id outside [0, V) (-1 after a fully masked step).
        const bool valid = x >= 0 && x < V;
        for (int64_t j = 0; j < r; ++j) e[j] = valid ? weight_at(a.w1, x * r + j) : 0.0f;
        if (conf) {
          float c = ch[b * K + k];
          if (ce != nullptr) {
            float dot = 0.0f;
            for (int64_t j = 0; j < r; ++j) dot += e[j] * ce[j];
            c += dot;
          }
          conf_out[b * K + k] = c;
        }
        bias_by_dots(w2, e.data(), r, 0, V, bias.data());
        const SegmentResult res = markov_row_step(io.base_row(b, k), bias.data(), io.z_row(b, k),
                                                  V, kSegment, mode, io.rng(b, k));
        io.finish(b, k, res.stats, res.best);
        x = teacher != nullptr ? teacher[b * K + k] : res.best.index;
      }
    }
  });
}

template <typename scalar_t>
void run_markov_any(MarkovArgs& a) {
  if (a.batch > kSmallBatch) {
    run_markov<scalar_t>(a);
    return;
  }
  const bool vanilla = a.head == MarkovHead::kVanilla;
  if (a.w2.scalar_type() == at::kBFloat16) {
    vanilla ? run_markov_small_vanilla<scalar_t, c10::BFloat16>(a)
            : run_markov_small<scalar_t, c10::BFloat16>(a);
  } else {
    vanilla ? run_markov_small_vanilla<scalar_t, float>(a) : run_markov_small<scalar_t, float>(a);
  }
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
                     AT_DISPATCH_CASE(at::kFloat, [&] { run_markov_any<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kBFloat16, [&] { run_markov_any<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kHalf, [&] { run_markov_any<scalar_t>(a); }));
  return a.outputs();
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(dspark, CPU, m) { m.impl("markov_sample", &cpu::markov_sample_cpu); }

}  // namespace dspark
