// Argument checks of small_linear (see small_linear_args.h), and its CUDA path (cuBLAS via
// at::linear: at a few rows a GPU GEMM is bound by reading W, which cuBLAS already is).
#include "small_linear_args.h"

#include <c10/util/Exception.h>
#include <torch/library.h>

namespace dspark {

void check_small_linear_args(const at::Tensor& x, const at::Tensor& weight,
                             const std::optional<at::Tensor>& bias) {
  constexpr const char* op = "small_linear";
  TORCH_CHECK(x.dim() >= 1, op, ": x must have at least 1 dimension [..., in_features], got a "
              "0-d tensor");
  TORCH_CHECK(weight.dim() == 2, op, ": weight must be [out_features, in_features], got shape ",
              weight.sizes());
  TORCH_CHECK(x.size(-1) == weight.size(1), op, ": x's last dimension (", x.size(-1),
              ") must equal weight.size(1) = in_features (", weight.size(1), ")");
  TORCH_CHECK(x.is_floating_point() && weight.scalar_type() == x.scalar_type(), op,
              ": x and weight must share one floating dtype, got ", x.scalar_type(), " and ",
              weight.scalar_type());
  TORCH_CHECK(weight.device() == x.device(), op, ": weight is on ", weight.device(),
              " but x is on ", x.device());
  if (bias.has_value()) {
    TORCH_CHECK(bias->dim() == 1 && bias->size(0) == weight.size(0), op,
                ": bias must be [out_features] = [", weight.size(0), "], got shape ",
                bias->sizes());
    TORCH_CHECK(bias->scalar_type() == x.scalar_type() && bias->device() == x.device(), op,
                ": bias must have x's dtype and device, got ", bias->scalar_type(), " on ",
                bias->device());
  }
}

namespace {

at::Tensor small_linear_linear(const at::Tensor& x, const at::Tensor& weight,
                               const std::optional<at::Tensor>& bias) {
  check_small_linear_args(x, weight, bias);
  return at::linear(x, weight, bias);
}

}  // namespace

TORCH_LIBRARY_FRAGMENT(dspark, m) {
  // y = x W^T + b (F.linear), tuned for a few rows of x: x [..., K], weight [N, K], bias [N].
  m.def("small_linear(Tensor x, Tensor weight, Tensor? bias) -> Tensor");
}

#ifdef DSPARK_WITH_CUDA
TORCH_LIBRARY_IMPL(dspark, CUDA, m) { m.impl("small_linear", &small_linear_linear); }
#endif

}  // namespace dspark
