// CPU kernels of the verification ops: requests are handed out to the threads of ATen's pool
// one at a time, each running the shared per-request algorithm (core/verify_row.h) with the
// vectorised row passes (cpu/row_passes_simd.h on AVX-512 and AVX2 builds, cpu/row_passes.h
// otherwise). Rows after a rejection are never read; nothing of size B*K*V is allocated.
#include <algorithm>
#include <atomic>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../core/verify_row.h"
#include "../verify_args.h"
#include "row_passes.h"
#include "row_passes_simd.h"

namespace dspark {
namespace cpu {
namespace {

#if defined(DSPARK_SIMD512)
using passes = simd::Passes<Avx512>;
#elif defined(DSPARK_SIMD256)
using passes = simd::Passes<Avx2>;
#else
using passes = generic::Passes;
#endif

template <typename scalar_t>
struct CpuRowExec {
  const VerifyProblem<scalar_t>& pb;
  int64_t b;
  scalar_t* dense = nullptr;     // [V] scratch of this thread, for sparse draft rows
  mutable int64_t dense_k = -1;  // the draft row it holds

  // Draft row k as V values: the row itself, or a sparse row written out densely
  // (core/verify_problem.h draft_ids) once per row, so every pass reads the law it stands for.
  const scalar_t* draft_dense(int64_t k) const {
    if (!pb.sparse_draft()) return pb.draft_row(b, k);
    if (dense_k != k) {
      std::fill_n(dense, pb.vocab, sparse_draft_fill<scalar_t>(pb.draft_probs));
      scatter_sparse_draft(pb.draft_row(b, k), pb.ids_row(b, k), pb.draft_width, pb.vocab,
                           dense, 0, 1);
      dense_k = k;
    }
    return dense;
  }

  int64_t vocab() const { return pb.vocab; }
  int64_t draft_token(int64_t k) const { return pb.draft_token(b, k); }
  float target_logit(int64_t k, int64_t v) const { return to_float(pb.target_row(b, k)[v]); }
  float draft_value(int64_t k, int64_t v) const { return to_float(draft_dense(k)[v]); }
  bool has_draft_row() const { return pb.draft != nullptr; }
  bool draft_is_probs() const { return pb.draft_probs; }
  const scalar_t* draft_row_or_null(int64_t k) const {
    return pb.draft != nullptr ? draft_dense(k) : nullptr;
  }

  LsePair row_lses(int64_t k, float scale) {
    // Two passes: fusing the rows into one loop measured no faster (the passes are bound by
    // the exp throughput, not by loads). Draft probabilities need no log-sum-exp, and a
    // caller-given draft_lse (markov_sample's) replaces the draft row's pass.
    const float lse_t = passes::row_lse(pb.target_row(b, k), pb.vocab, scale);
    if (pb.draft == nullptr || pb.draft_probs) return LsePair{lse_t, 0.0f};
    if (pb.draft_lse != nullptr) return LsePair{lse_t, pb.given_draft_lse2(b, k)};
    return LsePair{lse_t, passes::row_lse(draft_dense(k), pb.vocab, scale)};
  }
  float residual_mass(int64_t k, float scale, float w, float lse_t, float lse_d, int64_t onehot) {
    return passes::row_residual_mass(pb.target_row(b, k), draft_row_or_null(k), pb.draft_probs,
                                     pb.vocab, scale, w, lse_t, lse_d, onehot);
  }
  int64_t sample_residual(int64_t k, float scale, float w, float lse_t, float lse_d,
                          int64_t onehot, RngStream rng) {
    return passes::row_sample_residual(pb.target_row(b, k), draft_row_or_null(k), pb.draft_probs,
                                       pb.vocab, scale, w, lse_t, lse_d, onehot, rng);
  }
  int64_t sample_target(int64_t k, float scale, RngStream rng) {
    return passes::row_sample(pb.target_row(b, k), pb.vocab, scale, rng);
  }
  int64_t argmax_target(int64_t k) { return row_argmax(pb.target_row(b, k), pb.vocab); }

  void emit(int64_t j, int64_t token) { pb.out_tokens[b * (pb.max_draft + 1) + j] = token; }
  void flag(int64_t k, int8_t f) { pb.accept_flags[pb.flag_index(b, k)] = f; }
  void finish(int64_t accepted, int64_t emitted) {
    pb.accepted[b] = accepted;
    pb.num_emitted[b] = emitted;
  }
};

template <typename scalar_t>
void run_verify(VerifyArgs& args) {
  const VerifyProblem<scalar_t> pb = make_problem<scalar_t>(args);
  // Threads only pay when each task has real work: waking a pool costs microseconds on an
  // idle machine and a scheduler time slice on a busy one. A request reads up to 2(K+1)
  // vocabulary rows; group requests so a task covers at least kMinTaskElements logits.
  constexpr int64_t kMinTaskElements = int64_t{1} << 17;
  const int64_t per_request = std::max<int64_t>(1, 2 * (pb.max_draft + 1) * pb.vocab);
  const int64_t grain = std::max<int64_t>(1, kMinTaskElements / per_request);
  const int64_t tasks = (pb.batch + grain - 1) / grain;
  // Dynamic hand-out: a request's cost depends on where it is rejected (from two rows to
  // 2K+1), so a static split leaves one thread idle while another finishes a long request.
  std::atomic<int64_t> next_task{0};
  const int64_t workers = std::min<int64_t>(tasks, at::get_num_threads());
  at::parallel_for(0, workers, 1, [&](int64_t, int64_t) {
    std::vector<scalar_t> dense(pb.sparse_draft() ? static_cast<size_t>(pb.vocab) : 0);
    for (int64_t t = next_task.fetch_add(1); t < tasks; t = next_task.fetch_add(1)) {
      for (int64_t b = t * grain; b < std::min(pb.batch, (t + 1) * grain); ++b) {
        // Padding first: the algorithm writes only what it emits and tests.
        std::fill_n(pb.out_tokens + b * (pb.max_draft + 1), pb.max_draft + 1, int64_t{-1});
        if (!pb.ragged()) {
          std::fill_n(pb.accept_flags + b * pb.max_draft, pb.max_draft, kFlagUntested);
        }
        CpuRowExec<scalar_t> ex{pb, b, dense.data()};
        RowParams rp;
        rp.num_draft = pb.row_num_draft(b);  // validated by make_*_args
        rp.temperature = pb.row_temperature(b);
        rp.seed = pb.row_seed(b);
        rp.offset = pb.row_offset(b);
        verify_row(ex, rp, pb.block_method);
      }
    }
  });
}

VerifyOutputs dispatch(VerifyArgs args) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, args.target.scalar_type(),
                                  "dspark_verify_cpu", [&] { run_verify<scalar_t>(args); });
  return args.outputs();
}

VerifyOutputs verify_greedy_cpu(const at::Tensor& target_logits, const at::Tensor& draft_tokens,
                                const std::optional<at::Tensor>& num_draft) {
  return dispatch(make_padded_args("verify_greedy", target_logits, draft_tokens, DraftInput{},
                                   num_draft, std::nullopt, std::nullopt, std::nullopt, false));
}

VerifyOutputs verify_greedy_ragged_cpu(const at::Tensor& target_logits,
                                       const at::Tensor& draft_tokens,
                                       const at::Tensor& cu_num_draft, int64_t max_num_draft,
                                       bool cu_inclusive) {
  return dispatch(make_ragged_args("verify_greedy_ragged", target_logits, draft_tokens,
                                   DraftInput{}, cu_num_draft, max_num_draft, std::nullopt,
                                   std::nullopt, std::nullopt, false, cu_inclusive));
}

VerifyOutputs rejection_sample_cpu(const at::Tensor& target_logits,
                                   const at::Tensor& draft_tokens,
                                   const std::optional<at::Tensor>& draft_logits,
                                   const at::Tensor& temperature, const at::Tensor& seed,
                                   const at::Tensor& offset,
                                   const std::optional<at::Tensor>& num_draft, bool block,
                                   const std::optional<at::Tensor>& draft_probs,
                                   const std::optional<at::Tensor>& draft_lse,
                                   const std::optional<at::Tensor>& draft_ids) {
  return dispatch(make_padded_args("rejection_sample", target_logits, draft_tokens,
                                   DraftInput::of("rejection_sample", draft_logits, draft_probs),
                                   num_draft, temperature, seed, offset, block, draft_lse,
                                   draft_ids));
}

VerifyOutputs rejection_sample_ragged_cpu(const at::Tensor& target_logits,
                                          const at::Tensor& draft_tokens,
                                          const std::optional<at::Tensor>& draft_logits,
                                          const at::Tensor& cu_num_draft, int64_t max_num_draft,
                                          const at::Tensor& temperature, const at::Tensor& seed,
                                          const at::Tensor& offset, bool block,
                                          const std::optional<at::Tensor>& draft_probs,
                                          const std::optional<at::Tensor>& draft_lse,
                                          const std::optional<at::Tensor>& draft_ids,
                                          bool cu_inclusive) {
  return dispatch(make_ragged_args(
      "rejection_sample_ragged", target_logits, draft_tokens,
      DraftInput::of("rejection_sample_ragged", draft_logits, draft_probs), cu_num_draft,
      max_num_draft, temperature, seed, offset, block, cu_inclusive, draft_lse,
      draft_ids));
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(dspark, CPU, m) {
  m.impl("verify_greedy", &cpu::verify_greedy_cpu);
  m.impl("verify_greedy_ragged", &cpu::verify_greedy_ragged_cpu);
  m.impl("rejection_sample", &cpu::rejection_sample_cpu);
  m.impl("rejection_sample_ragged", &cpu::rejection_sample_ragged_cpu);
}

}  // namespace dspark
