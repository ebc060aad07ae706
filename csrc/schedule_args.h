// Argument checking and output allocation for the scheduler op (schedule_prefix), shared by
// the CPU and CUDA backends. As for the verification ops (verify_args.h): shape, dtype and
// device checks everywhere; checks that read tensor values (NaN or out-of-range confidences,
// SPS entries, max_len, capacity) only for CPU tensors, since reading CUDA memory would
// synchronise the host (the CUDA kernel sanitises instead: core/schedule.h).
#pragma once

#include <cstdint>
#include <optional>
#include <tuple>

#include <ATen/ATen.h>

#include "core/schedule.h"

namespace dspark {

// (lengths int64 [R], num_admitted int64 [], expected_tokens float64 [], throughput float64 [])
using ScheduleOutputs = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;

struct ScheduleArgs {
  at::Tensor confidence;               // float32/float64 [R, K], contiguous
  at::Tensor sps;                      // float32/float64 [>= B_max + 1], contiguous
  std::optional<at::Tensor> max_len;   // int64 [R], contiguous
  std::optional<at::Tensor> capacity;  // int64, one element
  int64_t num_requests = 0, max_draft = 0;
  int64_t max_batch_tokens = -1;       // -1: no budget
  ScheduleMode mode = ScheduleMode::kCausal;
  // Outputs.
  at::Tensor lengths, num_admitted, expected_tokens, throughput;

  ScheduleOutputs outputs() const { return {lengths, num_admitted, expected_tokens, throughput}; }
};

// Validate a schedule_prefix call and allocate its outputs.
ScheduleArgs make_schedule_args(const char* op, const at::Tensor& confidence,
                                const at::Tensor& sps, const std::optional<at::Tensor>& max_len,
                                const std::optional<at::Tensor>& capacity,
                                std::optional<int64_t> max_batch_tokens, bool early_stop);

}  // namespace dspark
