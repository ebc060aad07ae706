// Storage of the CUDA input-error words (cuda_input_errors.h): one int32 tensor per device,
// kept for the process's life.
#include <mutex>
#include <unordered_map>

#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>

#include "../cuda_input_errors.h"

namespace dspark {
namespace {

std::mutex g_mutex;

std::unordered_map<int, at::Tensor>& words() {
  static auto* w = new std::unordered_map<int, at::Tensor>();  // never destroyed: outlives
  return *w;                                                    // the CUDA context's teardown
}

at::Tensor& word_of(int device) {
  std::lock_guard<std::mutex> lock(g_mutex);
  at::Tensor& w = words()[device];
  if (!w.defined()) {
    const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
    w = at::zeros({1}, at::TensorOptions().dtype(at::kInt).device(at::kCUDA, device));
  }
  return w;
}

}  // namespace

int* cuda_input_error_word(int device) { return word_of(device).data_ptr<int>(); }

int64_t read_cuda_input_errors(int device, bool reset) {
  at::Tensor& w = word_of(device);
  const c10::cuda::CUDAGuard guard(static_cast<c10::DeviceIndex>(device));
  const int64_t bits = w.item<int>();  // synchronises
  if (reset) w.zero_();
  return bits;
}

}  // namespace dspark
