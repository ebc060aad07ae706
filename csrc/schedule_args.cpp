// Argument checks for the scheduler op (see schedule_args.h for the CPU/CUDA split).
#include "schedule_args.h"

#include <cmath>

#include <c10/util/Exception.h>

#include "verify_args.h"  // debug output poisoning

namespace dspark {
namespace {

void check_float_input(const char* op, const char* name, const at::Tensor& t) {
  const auto st = t.scalar_type();
  TORCH_CHECK(st == at::kFloat || st == at::kDouble, op, ": ", name,
              " must be float32 or float64, got ", st);
}

void check_device(const char* op, const char* name, const at::Tensor& t,
                  const at::Tensor& ref) {
  TORCH_CHECK(t.device() == ref.device(), op, ": ", name, " is on ", t.device(),
              " but confidence is on ", ref.device());
}

template <typename scalar_t>
void check_confidence_values(const char* op, const at::Tensor& c) {
  const scalar_t* p = c.const_data_ptr<scalar_t>();
  const int64_t rows = c.size(0), cols = c.size(1);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t k = 0; k < cols; ++k) {
      const double v = static_cast<double>(p[r * cols + k]);
      TORCH_CHECK(v >= 0.0 && v <= 1.0, op, ": confidence[", r, ", ", k, "] = ", v,
                  " must be a probability in [0, 1] (NaN is not allowed)");
    }
  }
}

template <typename scalar_t>
void check_sps_values(const char* op, const at::Tensor& sps, int64_t lo, int64_t hi) {
  const scalar_t* p = sps.const_data_ptr<scalar_t>();
  for (int64_t b = lo; b <= hi; ++b) {
    const double v = static_cast<double>(p[b]);
    TORCH_CHECK(std::isfinite(v) && v >= 0.0, op, ": sps[", b, "] = ", v,
                " must be finite and >= 0 (steps per second at ", b, " batch tokens)");
  }
}

}  // namespace

ScheduleArgs make_schedule_args(const char* op, const at::Tensor& confidence,
                                const at::Tensor& sps, const std::optional<at::Tensor>& max_len,
                                const std::optional<at::Tensor>& capacity,
                                std::optional<int64_t> max_batch_tokens, bool early_stop) {
  ScheduleArgs a;
  check_float_input(op, "confidence", confidence);
  TORCH_CHECK(confidence.device().is_cpu() || confidence.device().is_cuda(), op,
              ": confidence must be a CPU or CUDA tensor, got ", confidence.device());
  TORCH_CHECK(confidence.dim() == 2, op, ": confidence must be 2-D [R, K], got shape ",
              confidence.sizes());
  a.num_requests = confidence.size(0);
  a.max_draft = confidence.size(1);
  TORCH_CHECK(a.num_requests >= 1, op,
              ": confidence has R = 0 requests; there is nothing to schedule (skip the call)");
  TORCH_CHECK(a.max_draft >= 1, op, ": confidence must have K >= 1 draft positions, got shape ",
              confidence.sizes());
  TORCH_CHECK(a.num_requests <= (int64_t{1} << 30) && a.max_draft <= (int64_t{1} << 20) &&
                  a.num_requests * a.max_draft < (int64_t{1} << 31),
              op, ": confidence shape ", confidence.sizes(),
              " is too large (R <= 2^30, K <= 2^20, R*K < 2^31)");
  a.confidence = confidence.contiguous();

  if (max_batch_tokens.has_value()) {
    TORCH_CHECK(*max_batch_tokens >= a.num_requests, op, ": max_batch_tokens = ",
                *max_batch_tokens, " must be >= R = ", a.num_requests,
                " (every request verifies at least its bonus token)");
    a.max_batch_tokens = *max_batch_tokens;
  }
  int64_t largest = a.num_requests * (a.max_draft + 1);
  if (a.max_batch_tokens >= 0 && a.max_batch_tokens < largest) largest = a.max_batch_tokens;

  check_float_input(op, "sps", sps);
  check_device(op, "sps", sps, confidence);
  TORCH_CHECK(sps.dim() == 1, op, ": sps must be 1-D (sps[B] = steps per second at B batch "
              "tokens), got shape ", sps.sizes());
  TORCH_CHECK(sps.size(0) > largest, op, ": sps has ", sps.size(0),
              " entries but the largest possible batch is R*(K+1)",
              a.max_batch_tokens >= 0 ? " capped by max_batch_tokens" : "", " = ", largest,
              " tokens, so it needs at least ", largest + 1, " (indexed by batch tokens 0..",
              largest, ")");
  a.sps = sps.contiguous();

  if (max_len.has_value()) {
    const at::Tensor& m = *max_len;
    TORCH_CHECK(m.dim() == 1 && m.size(0) == a.num_requests, op, ": max_len must be 1-D [R] = [",
                a.num_requests, "], got shape ", m.sizes());
    TORCH_CHECK(m.scalar_type() == at::kLong, op, ": max_len must be int64, got ",
                m.scalar_type());
    check_device(op, "max_len", m, confidence);
    a.max_len = m.contiguous();
  }
  if (capacity.has_value()) {
    const at::Tensor& cap = *capacity;
    TORCH_CHECK(cap.numel() == 1 && cap.dim() <= 1, op,
                ": capacity must hold one value (shape [] or [1]), got shape ", cap.sizes());
    TORCH_CHECK(cap.scalar_type() == at::kLong, op, ": capacity must be int64, got ",
                cap.scalar_type());
    check_device(op, "capacity", cap, confidence);
    a.capacity = cap.reshape({1}).contiguous();
    a.mode = ScheduleMode::kCapacity;
  } else {
    a.mode = early_stop ? ScheduleMode::kCausal : ScheduleMode::kGlobal;
  }

  if (confidence.device().is_cpu()) {
    AT_DISPATCH_FLOATING_TYPES(a.confidence.scalar_type(), "dspark_schedule_check", [&] {
      check_confidence_values<scalar_t>(op, a.confidence);
    });
    AT_DISPATCH_FLOATING_TYPES(a.sps.scalar_type(), "dspark_schedule_check_sps", [&] {
      check_sps_values<scalar_t>(op, a.sps, a.num_requests, largest);
    });
    if (a.max_len) {
      const int64_t* m = a.max_len->const_data_ptr<int64_t>();
      for (int64_t r = 0; r < a.num_requests; ++r) {
        TORCH_CHECK(m[r] >= 0 && m[r] <= a.max_draft, op, ": max_len[", r, "] = ", m[r],
                    " must lie in [0, K] = [0, ", a.max_draft, "]");
      }
    }
    if (a.capacity) {
      const int64_t c = a.capacity->const_data_ptr<int64_t>()[0];
      TORCH_CHECK(c >= 0, op, ": capacity = ", c, " must be >= 0");
    }
  }

  const auto opts = confidence.options();
  a.lengths = at::empty({a.num_requests}, opts.dtype(at::kLong));
  a.num_admitted = at::empty({}, opts.dtype(at::kLong));
  a.expected_tokens = at::empty({}, opts.dtype(at::kDouble));
  a.throughput = at::empty({}, opts.dtype(at::kDouble));
  if (debug_poison_outputs()) {
    a.lengths.fill_(kPoisonIndex);
    a.num_admitted.fill_(kPoisonIndex);
    a.expected_tokens.fill_(std::nan(""));
    a.throughput.fill_(std::nan(""));
  }
  return a;
}

}  // namespace dspark
