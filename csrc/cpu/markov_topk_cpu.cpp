// CPU kernel of markov_sample_topk: the top-k Markov correction (core/markov_topk.h).
//
// 1. Candidates of every (row, position) up front, in parallel: one pass over the base logits
//    that keeps a small buffer of admitted lanes. A lane enters only while fewer than `topk`
//    are held or when it beats the current k-th value (a lane equal to it has a higher id and
//    ranks after it), and a 16-lane chunk whose maximum does not is skipped whole, so after the
//    first few chunks the pass is a vectorised max. The buffer is cut back to `topk` with
//    nth_element when it fills; the survivors are sorted into candidate order at the end.
// 2. The step loop of markov_head.h (the heads' u_k as ATen ops); each step computes the
//    candidates' bias W2[c] . u_k (topk dot products of length r per row, in the weight's own
//    dtype), z, the sampling keys (one Philox call per candidate) and the row's lse and token.
// Per step and row this reads topk rows of W2 instead of all V: the dense step's [B, r] x
// [r, V] product and its V-lane passes are what the option removes.
#include <algorithm>
#include <utility>
#include <vector>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../core/markov_topk.h"
#include "../markov_args.h"
#include "../markov_head.h"
#include "avx2_dot.h"
#include "markov_pass.h"

namespace dspark {
namespace cpu {
namespace {

struct Candidate {
  float value;
  int64_t id;
};

inline bool candidate_before(const Candidate& a, const Candidate& b) {
  return topk_before(a.value, a.id, b.value, b.id);
}

// The `topk` candidates of one row of V base logits, in candidate order, into ids / values.
template <typename scalar_t>
void select_candidates(const scalar_t* row, int64_t vocab, int64_t topk,
                       std::vector<Candidate>& buf, int64_t* ids, float* values) {
  constexpr int64_t kLanes = 16;
  const size_t cap = static_cast<size_t>(std::max<int64_t>(4 * topk, 256));
  buf.clear();
  float kth = kNegInf;  // value of the k-th candidate once `topk` are held
  bool full = false;    // `topk` held: only lanes above kth can enter
  auto shrink = [&] {
    std::nth_element(buf.begin(), buf.begin() + (topk - 1), buf.end(), candidate_before);
    buf.resize(static_cast<size_t>(topk));
    kth = buf[static_cast<size_t>(topk - 1)].value;  // the smallest value kept
    full = true;
  };
  for (int64_t c = 0; c < vocab; c += kLanes) {
    const int64_t n = std::min(kLanes, vocab - c);
    float v[kLanes];
    float m = kNegInf;
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; ++i) {
      v[i] = topk_rank_value(to_float(row[c + i]));
      m = max_f(m, v[i]);
    }
    if (full && !(m > kth)) continue;
    for (int64_t i = 0; i < n; ++i) {
      if (full && !(v[i] > kth)) continue;
      buf.push_back(Candidate{v[i], c + i});
      if ((!full && static_cast<int64_t>(buf.size()) == topk) || buf.size() >= cap) shrink();
    }
  }
  std::sort(buf.begin(), buf.end(), candidate_before);
  const int64_t kept = std::min<int64_t>(topk, static_cast<int64_t>(buf.size()));
  for (int64_t j = 0; j < kept; ++j) {
    ids[j] = buf[static_cast<size_t>(j)].id;
    values[j] = buf[static_cast<size_t>(j)].value;
  }
}

// W2[c] . u for one candidate, in the weight's own dtype.
template <typename w_t>
inline float candidate_bias(const w_t* __restrict__ w, const float* __restrict__ u, int64_t r) {
  int64_t j = 0;
  float acc = 0.0f;
#if defined(DSPARK_AVX2_DOT)
  __m256 a0 = _mm256_setzero_ps(), a1 = a0;
  for (; j + 16 <= r; j += 16) {
    a0 = dot8::fma(dot8::load(w + j), dot8::load(u + j), a0);
    a1 = dot8::fma(dot8::load(w + j + 8), dot8::load(u + j + 8), a1);
  }
  for (; j + 8 <= r; j += 8) a0 = dot8::fma(dot8::load(w + j), dot8::load(u + j), a0);
  acc = dot8::sum(_mm256_add_ps(a0, a1));
#endif
  for (; j < r; ++j) acc += to_float(w[j]) * u[j];
  return acc;
}

template <typename scalar_t, typename w_t>
void run_markov_topk(MarkovArgs& a) {
  const int64_t B = a.batch, K = a.steps, V = a.vocab, r = a.rank, k = a.topk;
  const scalar_t* base = a.base.const_data_ptr<scalar_t>();
  const int64_t sb = a.base.stride(0), sk = a.base.stride(1);
  int64_t* ids = a.ids.data_ptr<int64_t>();
  // float(base) at each candidate (NaN as -inf: a NaN lane only enters when fewer than topk
  // lanes rank above -inf, and then it contributes nothing, as a masked lane).
  std::vector<float> cand_base(static_cast<size_t>(B * K * k));
  at::parallel_for(0, B * K, 1, [&](int64_t begin, int64_t end) {
    std::vector<Candidate> buf;
    for (int64_t t = begin; t < end; ++t) {
      const int64_t b = t / K, s = t % K;
      select_candidates(base + b * sb + s * sk, V, k, buf, ids + t * k,
                        cand_base.data() + t * k);
    }
  });

  const w_t* w2 = a.w2.const_data_ptr<w_t>();
  const float* temperature = a.temperature.const_data_ptr<float>();
  const int64_t* seed = a.seed.const_data_ptr<int64_t>();
  const int64_t* offset = a.offset.const_data_ptr<int64_t>();
  scalar_t* z_out = a.logits.data_ptr<scalar_t>();
  float* lse = a.lse.data_ptr<float>();
  int64_t* tokens = a.tokens.data_ptr<int64_t>();
  const bool teacher = a.teacher.has_value();
  run_markov_steps(a, [&](const at::Tensor& u, int64_t step) {
    const float* up = u.const_data_ptr<float>();
    at::parallel_for(0, B, 1, [&](int64_t begin, int64_t end) {
      std::vector<float> s(static_cast<size_t>(k));
      for (int64_t b = begin; b < end; ++b) {
        MarkovRowMode mode = markov_row_mode(temperature[b]);
        mode.sample = mode.sample && !teacher;
        const RngStream rng = markov_stream(seed[b], offset[b], step);
        const int64_t row = b * K + step;
        const int64_t* c = ids + row * k;
        const float* cb = cand_base.data() + row * k;
        scalar_t* z = z_out + row * k;
        float m = kNegInf;
        ArgMax best = ArgMax::empty();
        for (int64_t j = 0; j < k; ++j) {
          const float zr = store_z(z + j, cb[j] + candidate_bias(w2 + c[j] * r, up + b * r, r));
          s[static_cast<size_t>(j)] = masked_scaled(zr, mode.inv_t);
          m = max_f(m, s[static_cast<size_t>(j)]);
          best.offer(markov_topk_key(s[static_cast<size_t>(j)], mode, rng, c[j]), c[j]);
        }
        SoftmaxStats st{m, 0.0f};
        if (m != kNegInf) {
          for (int64_t j = 0; j < k; ++j) st.sum += exp_f(s[static_cast<size_t>(j)] - m);
        }
        lse[row] = stats_lse(st);
        if (!teacher) tokens[row] = best.index;
      }
    });
  });
}

template <typename scalar_t>
void run_markov_topk_any(MarkovArgs& a) {
  if (a.w2.scalar_type() == at::kBFloat16) {
    run_markov_topk<scalar_t, c10::BFloat16>(a);
  } else {
    run_markov_topk<scalar_t, float>(a);
  }
}

MarkovTopkOutputs markov_sample_topk_cpu(
    const at::Tensor& base_logits, const at::Tensor& anchor_tokens, const at::Tensor& w1,
    const at::Tensor& w2, const at::Tensor& temperature, const at::Tensor& seed,
    const at::Tensor& offset, c10::string_view head, const std::optional<at::Tensor>& hidden,
    const std::optional<at::Tensor>& head_weight, const std::optional<at::Tensor>& head_bias,
    const std::optional<at::Tensor>& conf_weight, const std::optional<at::Tensor>& conf_bias,
    const std::optional<at::Tensor>& teacher_tokens, int64_t topk) {
  MarkovArgs a = make_markov_args(base_logits, anchor_tokens, w1, w2, temperature, seed, offset,
                                  std::string(head), hidden, head_weight, head_bias, conf_weight,
                                  conf_bias, teacher_tokens, checked_topk(topk));
  if (a.batch == 0) return topk_outputs(a);
  AT_DISPATCH_SWITCH(a.base.scalar_type(), "dspark_markov_topk_cpu",
                     AT_DISPATCH_CASE(at::kFloat, [&] { run_markov_topk_any<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kBFloat16, [&] { run_markov_topk_any<scalar_t>(a); })
                     AT_DISPATCH_CASE(at::kHalf, [&] { run_markov_topk_any<scalar_t>(a); }));
  return topk_outputs(a);
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(dspark, CPU, m) {
  m.impl("markov_sample_topk", &cpu::markov_sample_topk_cpu);
}

}  // namespace dspark
