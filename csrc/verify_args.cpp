// Argument checks for the verification ops (see verify_args.h for the CPU/CUDA split).
#include "verify_args.h"

#include <atomic>
#include <cmath>
#include <string>
#include <vector>
#include <limits>

#include <c10/util/Exception.h>

namespace dspark {
namespace {

constexpr int64_t kMaxVocab = std::numeric_limits<int32_t>::max();
constexpr int64_t kMaxPositions = (int64_t{1} << 24) - 1;  // RNG counter field (core/philox.h)

// float64 is read on the CPU (exact tests against a float64 reference; the math is float32
// as for every dtype, each logit rounded once on load): the CUDA kernels load 16-byte units
// of whole Philox groups, which 8-byte lanes would break.
void check_logits_dtype(const char* op, const char* name, const at::Tensor& t) {
  const auto st = t.scalar_type();
  TORCH_CHECK(t.device().is_cpu() || t.device().is_cuda(), op, ": ", name,
              " must be a CPU or CUDA tensor, got ", t.device());
  if (t.device().is_cpu()) {
    TORCH_CHECK(st == at::kFloat || st == at::kBFloat16 || st == at::kHalf || st == at::kDouble,
                op, ": ", name, " must be float32, bfloat16, float16 or float64, got ", st);
  } else {
    TORCH_CHECK(st == at::kFloat || st == at::kBFloat16 || st == at::kHalf, op, ": ", name,
                " must be float32, bfloat16 or float16 on CUDA (float64 only on the CPU), got ",
                st);
  }
}

bool is_index_dtype(at::ScalarType st) { return st == at::kLong || st == at::kInt; }

void check_index_dtype(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(is_index_dtype(t.scalar_type()), op, ": ", name, " must be int64 or int32, got ",
              t.scalar_type());
}

void check_same_device(const char* op, const char* name, const at::Tensor& t,
                       const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(),
              " but target_logits is on ", ref.device());
}

void check_dense_last_dim(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(t.size(-1) <= 1 || t.stride(-1) == 1, op, ": ", name,
              " must be contiguous in its last (vocabulary) dimension, got stride ",
              t.stride(-1), " (call .contiguous())");
}

// A 1-D [length] input, contiguous (a copy only for a strided view). `dtype` kLong means
// "an index": int64 or int32.
at::Tensor checked_vector(const char* op, const char* name, const at::Tensor& t,
                          at::ScalarType dtype, int64_t length, const at::Tensor& ref) {
  TORCH_CHECK(t.dim() == 1, op, ": ", name, " must be 1-D [", length, "], got shape ",
              t.sizes());
  TORCH_CHECK(t.size(0) == length, op, ": ", name, " must have ", length,
              " elements, got ", t.size(0));
  if (dtype == at::kLong) {
    check_index_dtype(op, name, t);
  } else {
    TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must be ", dtype, ", got ",
                t.scalar_type());
  }
  check_same_device(op, name, t, ref);
  return t.contiguous();
}

// Dtype, device and stride checks of draft rows (logits or probabilities) whose shape was
// checked by the caller; fills a.draft.
void set_draft(const char* op, VerifyArgs& a, const DraftInput& draft, const at::Tensor& target) {
  const at::Tensor& d = *draft.tensor;
  const char* name = draft.name();
  TORCH_CHECK(d.scalar_type() == target.scalar_type(), op, ": ", name,
              " must have the dtype of target_logits (", target.scalar_type(), "), got ",
              d.scalar_type());
  check_same_device(op, name, d, target);
  check_dense_last_dim(op, name, d);
  a.draft = d;
  a.draft_probs = draft.probs;
}

// Sparse draft rows: ids shaped like the draft rows (any strides but a contiguous last
// dimension, so a reduced vocabulary's map [W] may come as a broadcast view), int32 or int64,
// W in [1, V]. Returns W (V without ids).
int64_t set_draft_ids(const char* op, VerifyArgs& a, const DraftInput& draft,
                      const std::optional<at::Tensor>& draft_ids) {
  if (!draft_ids.has_value()) return a.vocab;
  const at::Tensor& ids = *draft_ids;
  TORCH_CHECK(draft.tensor.has_value(), op, ": draft_ids maps the columns of draft_logits or "
              "draft_probs; one-hot drafts have no draft rows");
  check_index_dtype(op, "draft_ids", ids);
  check_same_device(op, "draft_ids", ids, a.target);
  TORCH_CHECK(ids.sizes() == draft.tensor->sizes(), op, ": draft_ids must have the shape of ",
              draft.name(), " ", draft.tensor->sizes(), ", got ", ids.sizes());
  const int64_t width = ids.size(-1);
  TORCH_CHECK(width >= 1 && width <= a.vocab, op, ": draft rows with draft_ids must have 1 to V "
              "= ", a.vocab, " columns, got ", width);
  check_dense_last_dim(op, "draft_ids", ids);
  a.draft_ids = ids;
  return width;
}

// Verified rows' draft ids lie in [0, V) and are distinct within a row (a repeated id would
// make the row's mass and its dense form disagree). A row shared by every position (a
// broadcast map) is checked once.
void check_draft_ids_cpu(const char* op, const VerifyArgs& a, const VerifyProblem<float>& view) {
  std::vector<uint8_t> seen(static_cast<size_t>(a.vocab), 0);
  const void* last = nullptr;
  for (int64_t b = 0; b < a.batch; ++b) {
    const int64_t l = view.row_num_draft(b);
    for (int64_t k = 0; k < l; ++k) {
      const IndexArray ids = view.ids_row(b, k);
      if (ids.ptr == last) continue;
      last = ids.ptr;
      for (int64_t j = 0; j < a.draft_width; ++j) {
        const int64_t id = ids[j];
        TORCH_CHECK(id >= 0 && id < a.vocab, op, ": draft_ids of request ", b, " position ", k,
                    " column ", j, " is ", id, ", outside [0, ", a.vocab, ")");
        TORCH_CHECK(!seen[static_cast<size_t>(id)], op, ": draft_ids of request ", b,
                    " position ", k, " holds id ", id, " twice (the ids of a row must be "
                    "distinct)");
        seen[static_cast<size_t>(id)] = 1;
      }
      for (int64_t j = 0; j < a.draft_width; ++j) seen[static_cast<size_t>(ids[j])] = 0;
    }
  }
}

// The caller's log-sum-exp of each draft row (markov_sample's draft_lse): float32, shaped
// like the flags ([B, K] padded, [T] ragged), only next to draft logits. Its values cannot be
// checked without the pass it saves; the CPU op refuses NaN and +inf.
void set_draft_lse(const char* op, VerifyArgs& a, const std::optional<at::Tensor>& draft_lse,
                   c10::IntArrayRef shape) {
  if (!draft_lse.has_value()) return;
  const at::Tensor& l = *draft_lse;
  TORCH_CHECK(a.draft.has_value() && !a.draft_probs, op,
              ": draft_lse is only read next to draft_logits (draft probabilities and one-hot "
              "drafts need no log-sum-exp)");
  TORCH_CHECK(l.sizes() == shape, op, ": draft_lse must have shape ", shape, ", got ",
              l.sizes());
  TORCH_CHECK(l.scalar_type() == at::kFloat, op, ": draft_lse must be float32, got ",
              l.scalar_type());
  check_same_device(op, "draft_lse", l, a.target);
  a.draft_lse = l.contiguous();
  if (a.target.device().is_cpu()) {
    const float* v = a.draft_lse->const_data_ptr<float>();
    for (int64_t i = 0; i < a.draft_lse->numel(); ++i) {
      TORCH_CHECK(!std::isnan(v[i]) && v[i] != std::numeric_limits<float>::infinity(), op,
                  ": draft_lse[", i, "] is ", v[i], "; a log-sum-exp is finite or -inf (a "
                  "fully masked row)");
    }
  }
}

void check_sampling(const char* op, VerifyArgs& a, const std::optional<at::Tensor>& temperature,
                    const std::optional<at::Tensor>& seed,
                    const std::optional<at::Tensor>& offset) {
  if (!temperature.has_value()) return;  // greedy op
  TORCH_CHECK(seed.has_value() && offset.has_value(), op,
              ": seed and offset are required with temperature");
  a.temperature = checked_vector(op, "temperature", *temperature, at::kFloat, a.batch, a.target);
  a.seed = checked_vector(op, "seed", *seed, at::kLong, a.batch, a.target);
  a.offset = checked_vector(op, "offset", *offset, at::kLong, a.batch, a.target);
  if (a.target.device().is_cpu()) {
    const float* t = a.temperature->const_data_ptr<float>();
    for (int64_t b = 0; b < a.batch; ++b) {
      TORCH_CHECK(t[b] >= 0.0f && std::isfinite(t[b]), op, ": temperature[", b,
                  "] must be finite and >= 0 (0 = greedy), got ", t[b]);
    }
  }
}

void check_vocab(const char* op, int64_t vocab) {
  TORCH_CHECK(vocab >= 1, op, ": the vocabulary dimension of target_logits must be >= 1");
  TORCH_CHECK(vocab <= kMaxVocab, op, ": vocabulary size ", vocab, " exceeds ", kMaxVocab);
}

// Draft ids of verified positions must lie in [0, V); later positions are never read.
void check_draft_values_cpu(const char* op, const VerifyArgs& a,
                            const VerifyProblem<float>& view) {
  for (int64_t b = 0; b < a.batch; ++b) {
    const int64_t l = view.row_num_draft(b);
    for (int64_t k = 0; k < l; ++k) {
      const int64_t x = view.draft_token(b, k);
      TORCH_CHECK(x >= 0 && x < a.vocab, op, ": draft_tokens of request ", b, " position ", k,
                  " is ", x, ", outside [0, ", a.vocab, ") (only positions at or beyond "
                  "num_draft may hold a -1 placeholder)");
    }
  }
}

// Index-only view used by the CPU value checks.
VerifyProblem<float> index_view(const VerifyArgs& a) {
  VerifyProblem<float> p;
  p.draft_tokens = index_array(a.draft_tokens);
  p.num_draft = index_array(a.num_draft);
  p.cu_num_draft = index_array(a.cu_num_draft);
  p.cu_inclusive = a.cu_inclusive;
  p.draft_ids = index_array(a.draft_ids);
  p.draft_width = a.draft_width;
  if (a.cu_num_draft) {
    p.ids_sk = a.draft_ids ? a.draft_ids->stride(0) : 0;
  } else {
    p.ids_sb = a.draft_ids ? a.draft_ids->stride(0) : 0;
    p.ids_sk = a.draft_ids ? a.draft_ids->stride(1) : 0;
  }
  p.batch = a.batch;
  p.max_draft = a.max_draft;
  p.num_tokens = a.num_tokens;
  if (a.cu_num_draft) {
    p.tokens_sk = a.draft_tokens.stride(0);
  } else {
    p.tokens_sb = a.draft_tokens.stride(0);
    p.tokens_sk = a.draft_tokens.stride(1);
  }
  return p;
}

// accepted, num_emitted, out_tokens and the padded accept_flags are written in full by every
// kernel (including the -1 padding), so they start uninitialised; with debug poisoning on
// (tests) they start as a sentinel instead, so an element a kernel forgets shows up. The
// ragged flags are pre-filled because a row's flag range is only trusted after validation.
void allocate_outputs(VerifyArgs& a, int64_t flag_count, bool ragged) {
  const auto opts = a.target.options().dtype(at::kLong);
  a.accepted = at::empty({a.batch}, opts);
  a.num_emitted = at::empty({a.batch}, opts);
  a.out_tokens = at::empty({a.batch, a.max_draft + 1}, opts);
  a.accept_flags = ragged ? at::full({flag_count}, -1, opts.dtype(at::kChar))
                          : at::empty({a.batch, a.max_draft}, opts.dtype(at::kChar));
  if (debug_poison_outputs()) {
    a.accepted.fill_(kPoisonIndex);
    a.num_emitted.fill_(kPoisonIndex);
    a.out_tokens.fill_(kPoisonIndex);
    if (!ragged) a.accept_flags.fill_(kPoisonFlag);
  }
}

}  // namespace

namespace {
std::atomic<bool> g_poison_outputs{false};
}  // namespace

DraftInput DraftInput::of(const char* op, const std::optional<at::Tensor>& draft_logits,
                          const std::optional<at::Tensor>& draft_probs) {
  TORCH_CHECK(!(draft_logits.has_value() && draft_probs.has_value()), op,
              ": pass either draft_logits or draft_probs, not both (both None: one-hot "
              "drafts)");
  DraftInput d;
  d.probs = draft_probs.has_value();
  d.tensor = d.probs ? draft_probs : draft_logits;
  return d;
}

void set_debug_poison_outputs(bool on) { g_poison_outputs.store(on); }
bool debug_poison_outputs() { return g_poison_outputs.load(std::memory_order_relaxed); }

VerifyArgs make_padded_args(const char* op, const at::Tensor& target_logits,
                            const at::Tensor& draft_tokens, const DraftInput& draft,
                            const std::optional<at::Tensor>& num_draft,
                            const std::optional<at::Tensor>& temperature,
                            const std::optional<at::Tensor>& seed,
                            const std::optional<at::Tensor>& offset, bool block_method,
                            const std::optional<at::Tensor>& draft_lse,
                            const std::optional<at::Tensor>& draft_ids) {
  VerifyArgs a;
  check_logits_dtype(op, "target_logits", target_logits);
  TORCH_CHECK(target_logits.dim() == 3, op, ": target_logits must be 3-D [B, K+1, V], got shape ",
              target_logits.sizes());
  TORCH_CHECK(target_logits.size(1) >= 1, op,
              ": target_logits must have K+1 >= 1 rows per request, got shape ",
              target_logits.sizes());
  a.target = target_logits;
  a.batch = target_logits.size(0);
  a.max_draft = target_logits.size(1) - 1;
  a.vocab = target_logits.size(2);
  check_vocab(op, a.vocab);
  TORCH_CHECK(a.max_draft <= kMaxPositions, op, ": K = ", a.max_draft, " exceeds ", kMaxPositions);
  check_dense_last_dim(op, "target_logits", target_logits);

  TORCH_CHECK(draft_tokens.dim() == 2, op, ": draft_tokens must be 2-D [B, K], got shape ",
              draft_tokens.sizes());
  TORCH_CHECK(draft_tokens.size(0) == a.batch && draft_tokens.size(1) == a.max_draft, op,
              ": draft_tokens must be [B, K] = [", a.batch, ", ", a.max_draft,
              "] to match target_logits ", target_logits.sizes(), ", got ", draft_tokens.sizes());
  check_index_dtype(op, "draft_tokens", draft_tokens);
  check_same_device(op, "draft_tokens", draft_tokens, target_logits);
  a.draft_tokens = draft_tokens;

  if (draft.tensor.has_value()) {
    const at::Tensor& d = *draft.tensor;
    const bool sparse = draft_ids.has_value();
    TORCH_CHECK(d.dim() == 3 && d.size(0) == a.batch && d.size(1) == a.max_draft &&
                    (sparse || d.size(2) == a.vocab),
                op, ": ", draft.name(), " must be [B, K, V] = [", a.batch, ", ", a.max_draft,
                ", ", a.vocab, "]", sparse ? " (with draft_ids: [B, K, W])" : "",
                ", got shape ", d.sizes());
    set_draft(op, a, draft, target_logits);
  }
  a.draft_width = set_draft_ids(op, a, draft, draft_ids);
  set_draft_lse(op, a, draft_lse, {a.batch, a.max_draft});
  if (num_draft.has_value()) {
    a.num_draft = checked_vector(op, "num_draft", *num_draft, at::kLong, a.batch, target_logits);
    if (target_logits.device().is_cpu()) {
      const IndexArray l = index_array(a.num_draft);
      for (int64_t b = 0; b < a.batch; ++b) {
        TORCH_CHECK(l[b] >= 0 && l[b] <= a.max_draft, op, ": num_draft[", b, "] = ", l[b],
                    " must lie in [0, K] = [0, ", a.max_draft, "]");
      }
    }
  }
  check_sampling(op, a, temperature, seed, offset);
  a.block_method = block_method;
  if (target_logits.device().is_cpu()) {
    check_draft_values_cpu(op, a, index_view(a));
    if (a.draft_ids) check_draft_ids_cpu(op, a, index_view(a));
  }
  allocate_outputs(a, 0, /*ragged=*/false);
  return a;
}

VerifyArgs make_ragged_args(const char* op, const at::Tensor& target_logits,
                            const at::Tensor& draft_tokens, const DraftInput& draft,
                            const at::Tensor& cu_num_draft, int64_t max_num_draft,
                            const std::optional<at::Tensor>& temperature,
                            const std::optional<at::Tensor>& seed,
                            const std::optional<at::Tensor>& offset, bool block_method,
                            bool cu_inclusive, const std::optional<at::Tensor>& draft_lse,
                            const std::optional<at::Tensor>& draft_ids) {
  VerifyArgs a;
  check_logits_dtype(op, "target_logits", target_logits);
  TORCH_CHECK(target_logits.dim() == 2, op,
              ": target_logits must be 2-D [T + B, V] in the ragged layout, got shape ",
              target_logits.sizes());
  if (cu_inclusive) {
    TORCH_CHECK(cu_num_draft.dim() == 1, op, ": cu_num_draft must be 1-D [B] (inclusive ends, "
                "cu_inclusive=True), got shape ", cu_num_draft.sizes());
  } else {
    TORCH_CHECK(cu_num_draft.dim() == 1 && cu_num_draft.size(0) >= 1, op,
                ": cu_num_draft must be 1-D [B + 1] with B >= 0, got shape ",
                cu_num_draft.sizes());
  }
  check_index_dtype(op, "cu_num_draft", cu_num_draft);
  check_same_device(op, "cu_num_draft", cu_num_draft, target_logits);
  TORCH_CHECK(max_num_draft >= 0 && max_num_draft <= kMaxPositions, op,
              ": max_num_draft must lie in [0, ", kMaxPositions, "], got ", max_num_draft);
  a.target = target_logits;
  a.cu_inclusive = cu_inclusive;
  a.batch = cu_num_draft.size(0) - (cu_inclusive ? 0 : 1);
  a.max_draft = max_num_draft;
  a.vocab = target_logits.size(1);
  check_vocab(op, a.vocab);
  check_dense_last_dim(op, "target_logits", target_logits);

  TORCH_CHECK(draft_tokens.dim() == 1, op, ": draft_tokens must be 1-D [T] in the ragged layout, "
              "got shape ", draft_tokens.sizes());
  check_index_dtype(op, "draft_tokens", draft_tokens);
  check_same_device(op, "draft_tokens", draft_tokens, target_logits);
  a.draft_tokens = draft_tokens;
  a.num_tokens = draft_tokens.size(0);
  TORCH_CHECK(target_logits.size(0) == a.num_tokens + a.batch, op,
              ": target_logits must have T + B = ", a.num_tokens, " + ", a.batch, " = ",
              a.num_tokens + a.batch, " rows (each request's drafts plus its bonus row), got ",
              target_logits.size(0));
  if (draft.tensor.has_value()) {
    const at::Tensor& d = *draft.tensor;
    const bool sparse = draft_ids.has_value();
    TORCH_CHECK(d.dim() == 2 && d.size(0) == a.num_tokens && (sparse || d.size(1) == a.vocab),
                op, ": ", draft.name(), " must be [T, V] = [", a.num_tokens, ", ", a.vocab,
                "] in the ragged layout", sparse ? " (with draft_ids: [T, W])" : "",
                ", got shape ", d.sizes());
    set_draft(op, a, draft, target_logits);
  }
  a.draft_width = set_draft_ids(op, a, draft, draft_ids);
  set_draft_lse(op, a, draft_lse, {a.num_tokens});
  a.cu_num_draft = cu_num_draft.contiguous();
  if (target_logits.device().is_cpu()) {
    const IndexArray cu = index_array(a.cu_num_draft);
    // Inclusive ends [B]: entry b is the end of request b, the start is the previous entry
    // (0 for request 0); with the leading 0 [B + 1]: entry b + 1.
    const int64_t shift = cu_inclusive ? 0 : 1;
    if (!cu_inclusive) TORCH_CHECK(cu[0] == 0, op, ": cu_num_draft[0] must be 0, got ", cu[0]);
    for (int64_t b = 0; b < a.batch; ++b) {
      const int64_t hi = cu[b + shift];
      const int64_t lo = (b + shift == 0) ? 0 : cu[b + shift - 1];
      TORCH_CHECK(hi >= lo, op, ": cu_num_draft must be non-decreasing (from 0), but "
                  "cu_num_draft[", b + shift, "] = ", hi, " < ",
                  b + shift == 0 ? std::string("0")
                                 : "cu_num_draft[" + std::to_string(b + shift - 1) + "] = " +
                                       std::to_string(lo));
      TORCH_CHECK(hi - lo <= max_num_draft, op, ": request ", b, " has ", hi - lo,
                  " draft tokens, more than max_num_draft = ", max_num_draft);
    }
    const int64_t total = a.batch + shift - 1 >= 0 ? cu[a.batch + shift - 1] : 0;
    TORCH_CHECK(total == a.num_tokens, op, ": cu_num_draft[", cu_inclusive ? "B - 1" : "B",
                "] = ", total, " must equal the number of draft tokens T = ", a.num_tokens);
  }
  check_sampling(op, a, temperature, seed, offset);
  a.block_method = block_method;
  if (target_logits.device().is_cpu()) {
    check_draft_values_cpu(op, a, index_view(a));
    if (a.draft_ids) check_draft_ids_cpu(op, a, index_view(a));
  }
  allocate_outputs(a, a.num_tokens, /*ragged=*/true);
  return a;
}

}  // namespace dspark
