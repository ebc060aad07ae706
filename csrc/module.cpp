// The pybind11 module dspark_ext._C: build information and small helpers. Importing it also
// loads the op registrations (TORCH_LIBRARY / TORCH_LIBRARY_IMPL) compiled into this library.
#include <cstdint>
#include <string>
#include <vector>

#include <torch/extension.h>

#include "core/philox.h"
#include "cuda_input_errors.h"
#include "verify_args.h"

#ifndef DSPARK_VERSION
#define DSPARK_VERSION "0.0.0"
#endif
#ifndef DSPARK_CUDA_ARCH_LIST
#define DSPARK_CUDA_ARCH_LIST ""
#endif
#ifndef DSPARK_CPU_FLAGS
#define DSPARK_CPU_FLAGS ""
#endif

namespace {

bool cuda_enabled() {
#ifdef DSPARK_WITH_CUDA
  return true;
#else
  return false;
#endif
}

// Philox words of (seed, offset, position, purpose) for lane groups [0, groups): the tests
// check the pure-PyTorch reference generator against this, word for word.
std::vector<uint32_t> philox_words(int64_t seed, int64_t offset, int64_t position,
                                   uint32_t purpose, int64_t groups) {
  TORCH_CHECK(groups >= 0, "philox_words: groups must be >= 0, got ", groups);
  TORCH_CHECK(purpose <= 255, "philox_words: purpose must fit in 8 bits, got ", purpose);
  const auto rng = dspark::RngStream::make(seed, offset, position,
                                           static_cast<dspark::RngPurpose>(purpose));
  std::vector<uint32_t> out;
  out.reserve(static_cast<size_t>(groups) * 4);
  for (int64_t g = 0; g < groups; ++g) {
    const auto w = rng.words(static_cast<uint32_t>(g));
    out.insert(out.end(), {w.v[0], w.v[1], w.v[2], w.v[3]});
  }
  return out;
}

}  // namespace

// The CUDA input-error word of `device` (cuda_input_errors.h); 0 in a CPU-only build.
int64_t cuda_input_errors(int device, bool reset) {
#ifdef DSPARK_WITH_CUDA
  return dspark::read_cuda_input_errors(device, reset);
#else
  (void)device;
  (void)reset;
  return 0;
#endif
}

PYBIND11_MODULE(_C, m) {
  m.doc() = "dspark_ext native library: build info and helpers (ops live in torch.ops.dspark)";
  m.def("cuda_enabled", &cuda_enabled, "True when the CUDA kernels were compiled in");
  m.def("cuda_arch_list", [] { return std::string(DSPARK_CUDA_ARCH_LIST); },
        "TORCH_CUDA_ARCH_LIST the CUDA kernels were compiled for ('' when CPU-only)");
  m.def("cpu_flags", [] { return std::string(DSPARK_CPU_FLAGS); },
        "Instruction-set flags the CPU kernels were compiled with");
  m.def("version", [] { return std::string(DSPARK_VERSION); });
  m.def("cuda_input_errors", &cuda_input_errors, pybind11::arg("device"),
        pybind11::arg("reset") = true,
        "Bits of the CUDA input-error word of a device (synchronises it); reset clears it");
  m.def("set_debug_poison_outputs", &dspark::set_debug_poison_outputs,
        "Tests: fill op outputs with a sentinel before the kernel runs, so unwritten elements "
        "are caught", py::arg("on"));
  m.def("philox_words", &philox_words, "Philox4x32-10 words of one RNG stream (testing aid)",
        py::arg("seed"), py::arg("offset"), py::arg("position"), py::arg("purpose"),
        py::arg("groups"));
}
