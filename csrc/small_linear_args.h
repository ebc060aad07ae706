// Argument checks of dspark::small_linear (y = x W^T + b, F.linear's function), shared by its
// CPU kernel and the CUDA / fallback path.
#pragma once

#include <cstdint>
#include <optional>

#include <ATen/ATen.h>

namespace dspark {

// Rows of x (all leading dimensions together) up to which the CPU kernel tiles by hand.
constexpr int64_t kSmallLinearMaxRows = 16;

void check_small_linear_args(const at::Tensor& x, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias);

}  // namespace dspark
