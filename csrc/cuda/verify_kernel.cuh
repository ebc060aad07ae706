// The body of the verification kernel for one request (one thread block), apart from the
// launch code so that it depends on nothing but the executor headers.
#pragma once

#include <cstdint>

#include "../core/verify_problem.h"
#include "../core/verify_row.h"
#include "block_reduce.cuh"
#include "row_exec.cuh"

namespace dspark {
namespace cuda {

// True when every verified draft id of request b lies in [0, V). The CPU op raises on such
// ids; here the row is left empty instead (verify_row.h alone would treat them as rejected
// drafts and still emit a token, which would hide the caller's bug). Threads check a strided
// share each; the barrier-or hands every thread the same answer.
template <typename scalar_t, int kThreads>
__device__ __forceinline__ bool draft_ids_valid(const VerifyProblem<scalar_t>& pb, int64_t b,
                                                int64_t num_draft) {
  int bad = 0;
  for (int64_t k = threadIdx.x; k < num_draft; k += kThreads) {
    const int64_t x = pb.draft_token(b, k);
    bad |= (x < 0 || x >= pb.vocab) ? 1 : 0;
  }
  return __syncthreads_or(bad) == 0;
}

// Writes the padding of request b's outputs: out_tokens[b, :] = -1 and, in the padded layout,
// accept_flags[b, :] = untested. The outputs start uninitialised (verify_args.cpp) and the
// algorithm writes only what it emits and tests. These slices are in bounds whatever the
// request's values; the ragged flags are pre-filled by verify_args.cpp instead, since a
// request's flag range is only known after its offsets are validated.
template <typename scalar_t, int kThreads>
__device__ __forceinline__ void write_padding(const VerifyProblem<scalar_t>& pb, int64_t b) {
  int64_t* tokens = pb.out_tokens + b * (pb.max_draft + 1);
  for (int64_t j = threadIdx.x; j <= pb.max_draft; j += kThreads) tokens[j] = -1;
  if (!pb.ragged()) {
    int8_t* flags = pb.accept_flags + b * pb.max_draft;
    for (int64_t k = threadIdx.x; k < pb.max_draft; k += kThreads) flags[k] = kFlagUntested;
  }
  __syncthreads();  // the padding lands before thread 0 overwrites some of it
}

// Verifies request b with the whole block. Every branch here depends only on values all
// threads read alike, so the block stays uniform and each thread reaches each barrier.
// A request with invalid values (ragged offsets or their ends, num_draft out of [0, K],
// draft ids outside [0, V), temperature < 0 or non-finite) gets accepted = num_emitted = 0
// and only padding (-1 tokens, untested flags), nothing is read out of bounds for it, and
// the check's bit is set in the device's input-error word (core/verify_problem.h).
template <typename scalar_t, int kThreads>
__device__ __forceinline__ void verify_request(const VerifyProblem<scalar_t>& pb, int64_t b,
                                               ReduceScratch& scratch) {
  write_padding<scalar_t, kThreads>(pb, b);
  const bool ends_ok = pb.ragged_ends_ok();
  const int64_t num_draft = ends_ok ? pb.row_num_draft(b) : -1;
  int error = !ends_ok ? kInputErrorRaggedEnds : (num_draft < 0 ? kInputErrorCounts : 0);
  if (error == 0 && !draft_ids_valid<scalar_t, kThreads>(pb, b, num_draft)) {
    error = kInputErrorDraftIds;
  }
  if (error == 0 && !temperature_ok(pb.row_temperature(b))) error = kInputErrorTemperature;
  if (error != 0) {
    if (threadIdx.x == 0) {
      pb.accepted[b] = 0;
      pb.num_emitted[b] = 0;
      if (pb.error_word != nullptr) atomicOr(pb.error_word, error);
    }
    return;
  }
  auto ex = CudaRowExec<scalar_t, kThreads>::make(pb, b, &scratch);
  RowParams rp;
  rp.num_draft = num_draft;
  rp.temperature = pb.row_temperature(b);
  rp.seed = pb.row_seed(b);
  rp.offset = pb.row_offset(b);
  verify_row(ex, rp, pb.block_method);  // invalid temperatures: finish(0, 0) in there
}

}  // namespace cuda
}  // namespace dspark
