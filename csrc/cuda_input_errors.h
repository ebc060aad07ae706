// The CUDA input-error word (core/verify_problem.h kInputError*): one int32 per device that
// the CUDA verification kernel ORs a bit into for every row it leaves empty because a value
// check failed (the CPU op raises for those instead; the CUDA op cannot without a host
// synchronisation). Python reads it with dspark_ext.check_cuda_inputs().
#pragma once

#include <cstdint>

namespace dspark {

// Device pointer to `device`'s word (allocated, zeroed, on first use).
int* cuda_input_error_word(int device);

// The word's bits (synchronises the device); `reset` clears it.
int64_t read_cuda_input_errors(int device, bool reset);

}  // namespace dspark
