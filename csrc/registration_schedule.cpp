// Schema of the scheduler op (design §6), kept apart from registration.cpp (the verification
// ops). Kernels: cpu/schedule_cpu.cpp, cuda/schedule_cuda.cu; fake kernel:
// dspark_ext/_fake_schedule.py; wrappers: dspark_ext/scheduler.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(dspark, m) {
  // confidence [R, K] conditional confidences c (float32/64, in [0, 1]); sps [>= B_max + 1]
  // steps per second indexed by batch tokens; max_len int64 [R] per-request caps; capacity
  // int64 (one value): admit the top-capacity candidates (asynchronous scheduler), else
  // early_stop selects Algorithm 1 (true) or the unconstrained search (false);
  // max_batch_tokens: global budget on R + sum(l_r).
  // Outputs: lengths int64 [R], num_admitted int64 [], expected_tokens float64 [] (tau),
  // throughput float64 [] (Theta = tau * SPS(R + num_admitted)).
  m.def(
      "schedule_prefix(Tensor confidence, Tensor sps, Tensor? max_len=None, "
      "Tensor? capacity=None, int? max_batch_tokens=None, bool early_stop=True) -> "
      "(Tensor, Tensor, Tensor, Tensor)");
}
