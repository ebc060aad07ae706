// Head math of markov_sample in ATen (see markov_head.h).
#include "markov_head.h"

namespace dspark {
namespace {

at::Tensor f32(const at::Tensor& t) { return t.to(at::kFloat); }

// e = W1[x] as float32 [B, r]; zero rows for ids outside [0, V).
at::Tensor embed(const MarkovArgs& a, const at::Tensor& x) {
  const at::Tensor valid = at::logical_and(x >= 0, x < a.vocab);
  const at::Tensor idx = at::where(valid, x, at::zeros_like(x));
  const at::Tensor e = f32(a.w1.index_select(0, idx));
  return at::where(valid.unsqueeze(1), e, at::zeros_like(e));
}

// hidden [B, K, d] @ w[:, cols].T (+ bias): the hidden-state part of a head's projection,
// for all positions at once (it does not depend on the sampled tokens).
at::Tensor hidden_part(const at::Tensor& hidden, const at::Tensor& w,
                       const std::optional<at::Tensor>& bias) {
  at::Tensor out = at::matmul(hidden, w.t());
  if (bias.has_value()) out = out + f32(*bias);
  return out;
}

}  // namespace

void run_markov_steps(MarkovArgs& a, const MarkovStep& step) {
  const int64_t r = a.rank, d = a.hidden_size;
  const at::Tensor hidden = a.hidden.has_value() ? f32(*a.hidden) : at::Tensor();

  // Gated: g = sigmoid(Wg [h; e] + bg), Wg = [Wh | We]. RNN: [gate; cand; out] =
  // Wj [s; e; h] + bj, Wj = [Ws | We | Wh].
  at::Tensor pre, w_e, w_s;
  if (a.head != MarkovHead::kVanilla) {
    const at::Tensor w = f32(*a.head_weight);
    if (a.head == MarkovHead::kGated) {
      pre = hidden_part(hidden, w.narrow(1, 0, d), a.head_bias);  // [B, K, r]
      w_e = w.narrow(1, d, r).t();                                // [r, r]
    } else {
      pre = hidden_part(hidden, w.narrow(1, 2 * r, d), a.head_bias);  // [B, K, 3r]
      w_s = w.narrow(1, 0, r).t();                                    // [r, 3r]
      w_e = w.narrow(1, r, r).t();                                    // [r, 3r]
    }
  }
  // Confidence logits c_k = w . [h_k; e_k] + b.
  at::Tensor conf_pre, conf_e;
  if (a.conf_weight.has_value()) {
    const at::Tensor w = f32(*a.conf_weight);
    conf_pre = at::matmul(hidden, w.narrow(0, 0, d));  // [B, K]
    if (a.conf_bias.has_value()) conf_pre = conf_pre + f32(*a.conf_bias).reshape({});
    if (a.conf_with_markov) conf_e = w.narrow(0, d, r);
  }

  at::Tensor x = a.anchor;
  at::Tensor state = a.head == MarkovHead::kRnn
                         ? at::zeros({a.batch, r}, a.base.options().dtype(at::kFloat))
                         : at::Tensor();
  for (int64_t k = 0; k < a.steps; ++k) {
    const at::Tensor e = embed(a, x);
    if (a.conf_weight.has_value()) {
      at::Tensor c = conf_pre.select(1, k);
      if (a.conf_with_markov) c = c + at::mv(e, conf_e);
      a.conf.select(1, k).copy_(c);
    }
    at::Tensor u;
    switch (a.head) {
      case MarkovHead::kVanilla:
        u = e;
        break;
      case MarkovHead::kGated:
        u = at::sigmoid(pre.select(1, k) + at::mm(e, w_e)) * e;
        break;
      case MarkovHead::kRnn: {
        const at::Tensor z = pre.select(1, k) + at::mm(state, w_s) + at::mm(e, w_e);
        const at::Tensor gate = at::sigmoid(z.narrow(1, 0, r));
        const at::Tensor cand = at::tanh(z.narrow(1, r, r));
        u = at::tanh(z.narrow(1, 2 * r, r));
        state = gate * state + (1 - gate) * cand;
        break;
      }
    }
    step(u.contiguous(), k);
    x = (a.teacher.has_value() ? *a.teacher : a.tokens).select(1, k).contiguous();
  }
}

}  // namespace dspark
