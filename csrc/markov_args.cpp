// Argument checks and output allocation of markov_sample (see markov_args.h).
#include "markov_args.h"

#include <cmath>
#include <limits>

#include <c10/util/Exception.h>

#include "core/markov_math.h"
#include "verify_args.h"  // debug_poison_outputs, kPoisonIndex

namespace dspark {
namespace {

constexpr const char* kOp = "markov_sample";
constexpr int64_t kMaxVocab = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxPositions = (int64_t{1} << 24) - 1;  // RNG counter field (core/philox.h)

void check_device(const char* name, const at::Tensor& t, const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), kOp, ": ", name, " is on ", t.device(),
              " but base_logits is on ", ref.device());
}

void check_weight_dtype(const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kBFloat16, kOp, ": ",
              name, " must be float32 or bfloat16, got ", t.scalar_type());
}

void check_float_dtype(const char* name, const at::Tensor& t) {
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kBFloat16 || st == at::kHalf, kOp, ": ", name,
              " must be float32, bfloat16 or float16, got ", st);
}

at::Tensor checked_vector(const char* name, const at::Tensor& t, at::ScalarType dtype,
                          int64_t length, const at::Tensor& ref) {
  TORCH_CHECK(t.dim() == 1 && t.size(0) == length, kOp, ": ", name, " must be 1-D [B] = [",
              length, "], got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, kOp, ": ", name, " must be ", dtype, ", got ",
              t.scalar_type());
  check_device(name, t, ref);
  return t.contiguous();
}

// A head weight: `rows` x `cols` (a 1-row Linear weight may be given flat when rows == 1).
at::Tensor checked_matrix(const char* name, const at::Tensor& t, int64_t rows, int64_t cols,
                          const char* layout, const at::Tensor& ref) {
  check_weight_dtype(name, t);
  check_device(name, t, ref);
  TORCH_CHECK(t.dim() == 2 && t.size(0) == rows && t.size(1) == cols, kOp, ": ", name,
              " must be ", layout, " = [", rows, ", ", cols, "], got shape ", t.sizes());
  return t;
}

void check_hidden(MarkovArgs& a, const char* why) {
  TORCH_CHECK(a.hidden.has_value(), kOp, ": hidden [B, K, d] is required ", why);
}

void check_head(MarkovArgs& a, const std::string& head) {
  if (head == "vanilla") {
    a.head = MarkovHead::kVanilla;
  } else if (head == "gated") {
    a.head = MarkovHead::kGated;
  } else if (head == "rnn") {
    a.head = MarkovHead::kRnn;
  } else {
    TORCH_CHECK(false, kOp, ": head must be 'vanilla', 'gated' or 'rnn', got '", head, "'");
  }
  const int64_t r = a.rank, d = a.hidden_size;
  if (a.head == MarkovHead::kVanilla) {
    TORCH_CHECK(!a.head_weight.has_value() && !a.head_bias.has_value(), kOp,
                ": the vanilla head takes no gate/joint weights (got head_weight or head_bias); "
                "pass head='gated' or head='rnn'");
    return;
  }
  const bool gated = a.head == MarkovHead::kGated;
  const char* wname = gated ? "gate_weight (markov_head.gate_proj.weight)"
                            : "joint_weight (markov_head.joint_proj.weight)";
  const char* bname = gated ? "gate_bias (markov_head.gate_proj.bias)"
                            : "joint_bias (markov_head.joint_proj.bias)";
  check_hidden(a, gated ? "by the gated head" : "by the rnn head");
  TORCH_CHECK(a.head_weight.has_value(), kOp, ": the ", head, " head needs ", wname);
  const int64_t out = gated ? r : 3 * r;
  const int64_t in = gated ? d + r : 2 * r + d;
  a.head_weight = checked_matrix(wname, *a.head_weight, out, in,
                                 gated ? "[r, d + r]" : "[3r, 2r + d]", a.base);
  if (a.head_bias.has_value()) {
    const at::Tensor& b = *a.head_bias;
    check_weight_dtype(bname, b);
    check_device(bname, b, a.base);
    TORCH_CHECK(b.dim() == 1 && b.size(0) == out, kOp, ": ", bname, " must be 1-D [",
                gated ? "r" : "3r", "] = [", out, "], got shape ", b.sizes());
  }
}

void check_confidence(MarkovArgs& a) {
  if (!a.conf_weight.has_value()) {
    TORCH_CHECK(!a.conf_bias.has_value(), kOp, ": conf_bias given without conf_weight");
    return;
  }
  check_hidden(a, "by the confidence head (conf_weight)");
  at::Tensor w = *a.conf_weight;
  check_weight_dtype("conf_weight", w);
  check_device("conf_weight", w, a.base);
  if (w.dim() == 2 && w.size(0) == 1) w = w.reshape({w.size(1)});  // nn.Linear(n, 1).weight
  const int64_t d = a.hidden_size, r = a.rank;
  TORCH_CHECK(w.dim() == 1 && (w.size(0) == d + r || w.size(0) == d), kOp,
              ": conf_weight must be [d + r] = [", d + r, "] (input [h; e]) or [d] = [", d,
              "] (input [h]), got shape ", a.conf_weight->sizes());
  a.conf_with_markov = w.size(0) == d + r && r > 0;
  a.conf_weight = w;
  if (a.conf_bias.has_value()) {
    const at::Tensor& b = *a.conf_bias;
    check_weight_dtype("conf_bias", b);
    check_device("conf_bias", b, a.base);
    TORCH_CHECK(b.numel() == 1 && b.dim() <= 1, kOp, ": conf_bias must hold one value ([1] "
                "or []), got shape ", b.sizes());
  }
}

void check_values_cpu(const MarkovArgs& a) {
  const int64_t* anchor = a.anchor.const_data_ptr<int64_t>();
  const float* t = a.temperature.const_data_ptr<float>();
  for (int64_t b = 0; b < a.batch; ++b) {
    TORCH_CHECK(anchor[b] >= 0 && anchor[b] < a.vocab, kOp, ": anchor_tokens[", b, "] = ",
                anchor[b], " is outside [0, V) = [0, ", a.vocab, ")");
    TORCH_CHECK(markov_temperature_ok(t[b]), kOp, ": temperature[", b,
                "] must be finite and >= 0 (0 = greedy), got ", t[b]);
  }
  if (a.teacher.has_value()) {
    const at::Tensor x = *a.teacher;
    const int64_t* p = x.const_data_ptr<int64_t>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      TORCH_CHECK(p[i] >= 0 && p[i] < a.vocab, kOp, ": teacher_tokens[", i / a.steps, ", ",
                  i % a.steps, "] = ", p[i], " is outside [0, V) = [0, ", a.vocab, ")");
    }
  }
}

void allocate_outputs(MarkovArgs& a) {
  const auto opts = a.base.options();
  a.logits = at::empty({a.batch, a.steps, a.topk > 0 ? a.topk : a.vocab}, opts);
  if (a.topk > 0) a.ids = at::empty({a.batch, a.steps, a.topk}, opts.dtype(at::kLong));
  a.lse = at::empty({a.batch, a.steps}, opts.dtype(at::kFloat));
  a.conf = at::empty({a.batch, a.conf_weight.has_value() ? a.steps : 0}, opts.dtype(at::kFloat));
  if (a.teacher.has_value()) {
    a.tokens = a.teacher->clone(at::MemoryFormat::Contiguous);
  } else {
    a.tokens = at::empty({a.batch, a.steps}, opts.dtype(at::kLong));
    if (debug_poison_outputs()) a.tokens.fill_(kPoisonIndex);
  }
  if (debug_poison_outputs()) {
    if (a.topk > 0) a.ids.fill_(kPoisonIndex);
    a.logits.fill_(std::numeric_limits<float>::quiet_NaN());
    a.lse.fill_(std::numeric_limits<float>::quiet_NaN());
    a.conf.fill_(std::numeric_limits<float>::quiet_NaN());
  }
}

}  // namespace

int64_t checked_topk(int64_t topk) {
  TORCH_CHECK(topk >= 1, kOp, ": topk must be >= 1 (the candidates per position), got ", topk);
  return topk;
}

MarkovArgs make_markov_args(const at::Tensor& base_logits, const at::Tensor& anchor_tokens,
                            const at::Tensor& w1, const at::Tensor& w2,
                            const at::Tensor& temperature, const at::Tensor& seed,
                            const at::Tensor& offset, const std::string& head,
                            const std::optional<at::Tensor>& hidden,
                            const std::optional<at::Tensor>& head_weight,
                            const std::optional<at::Tensor>& head_bias,
                            const std::optional<at::Tensor>& conf_weight,
                            const std::optional<at::Tensor>& conf_bias,
                            const std::optional<at::Tensor>& teacher_tokens,
                            int64_t topk) {
  MarkovArgs a;
  check_float_dtype("base_logits", base_logits);
  TORCH_CHECK(base_logits.device().is_cpu() || base_logits.device().is_cuda(), kOp,
              ": base_logits must be a CPU or CUDA tensor, got ", base_logits.device());
  TORCH_CHECK(base_logits.dim() == 3, kOp, ": base_logits must be 3-D [B, K, V], got shape ",
              base_logits.sizes());
  a.batch = base_logits.size(0);
  a.steps = base_logits.size(1);
  a.vocab = base_logits.size(2);
  TORCH_CHECK(a.steps >= 1, kOp, ": base_logits must have K >= 1 draft positions, got shape ",
              base_logits.sizes());
  TORCH_CHECK(a.steps <= kMaxPositions, kOp, ": K = ", a.steps, " exceeds ", kMaxPositions);
  TORCH_CHECK(a.vocab >= 1 && a.vocab <= kMaxVocab, kOp, ": the vocabulary dimension of "
              "base_logits must lie in [1, ", kMaxVocab, "], got ", a.vocab);
  TORCH_CHECK(base_logits.stride(2) == 1 || a.vocab == 1, kOp,
              ": base_logits must be contiguous in its last (vocabulary) dimension, got stride ",
              base_logits.stride(2), " (call .contiguous())");
  a.base = base_logits;
  TORCH_CHECK(topk >= 0 && topk <= a.vocab, kOp, ": topk must lie in [1, V] = [1, ", a.vocab,
              "] (the candidates per position), got ", topk);
  a.topk = topk;

  a.anchor = checked_vector("anchor_tokens", anchor_tokens, at::kLong, a.batch, base_logits);
  check_weight_dtype("w1 (markov_head.markov_w1.weight)", w1);
  check_weight_dtype("w2 (markov_head.markov_w2.weight)", w2);
  check_device("w1", w1, base_logits);
  check_device("w2", w2, base_logits);
  TORCH_CHECK(w2.dim() == 2 && w2.size(0) == a.vocab, kOp,
              ": w2 (markov_head.markov_w2.weight) must be [V, r] with V = ", a.vocab,
              " (the vocabulary of base_logits), got shape ", w2.sizes());
  a.rank = w2.size(1);
  TORCH_CHECK(a.rank >= 1 && a.rank <= kMarkovMaxRank, kOp, ": the Markov rank r = w2.size(1)"
              " must lie in [1, ", kMarkovMaxRank, "], got ", a.rank);
  TORCH_CHECK(w1.dim() == 2 && w1.size(0) == a.vocab && w1.size(1) == a.rank, kOp,
              ": w1 (markov_head.markov_w1.weight) must be [V, r] = [", a.vocab, ", ", a.rank,
              "] to match base_logits and w2, got shape ", w1.sizes());
  a.w1 = w1.contiguous();
  a.w2 = w2.contiguous();
  a.temperature = checked_vector("temperature", temperature, at::kFloat, a.batch, base_logits);
  a.seed = checked_vector("seed", seed, at::kLong, a.batch, base_logits);
  a.offset = checked_vector("offset", offset, at::kLong, a.batch, base_logits);

  if (hidden.has_value()) {
    const at::Tensor& h = *hidden;
    check_float_dtype("hidden", h);
    check_device("hidden", h, base_logits);
    TORCH_CHECK(h.dim() == 3 && h.size(0) == a.batch && h.size(1) == a.steps && h.size(2) >= 1,
                kOp, ": hidden must be [B, K, d] with [B, K] = [", a.batch, ", ", a.steps,
                "] as in base_logits, got shape ", h.sizes());
    a.hidden = h;
    a.hidden_size = h.size(2);
  }
  a.head_weight = head_weight;
  a.head_bias = head_bias;
  check_head(a, head);
  a.conf_weight = conf_weight;
  a.conf_bias = conf_bias;
  check_confidence(a);
  if (teacher_tokens.has_value()) {
    const at::Tensor& x = *teacher_tokens;
    TORCH_CHECK(x.dim() == 2 && x.size(0) == a.batch && x.size(1) == a.steps, kOp,
                ": teacher_tokens must be [B, K] = [", a.batch, ", ", a.steps, "], got shape ",
                x.sizes());
    TORCH_CHECK(x.scalar_type() == at::kLong, kOp, ": teacher_tokens must be int64, got ",
                x.scalar_type());
    check_device("teacher_tokens", x, base_logits);
    a.teacher = x.contiguous();
  }
  if (base_logits.device().is_cpu()) check_values_cpu(a);
  allocate_outputs(a);
  return a;
}

}  // namespace dspark
