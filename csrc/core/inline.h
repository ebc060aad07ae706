// Shared function-qualifier macro of the header-only core.
#pragma once

// DSPARK_FN marks the per-element functions: host+device, and always inlined, because the
// CPU loops only vectorise when these are inlined into them (GCC's size heuristics decline
// otherwise under -fPIC).
#if defined(__CUDACC__)
#define DSPARK_FN __host__ __device__ __forceinline__
#elif defined(__GNUC__)
#define DSPARK_FN inline __attribute__((always_inline))
#else
#define DSPARK_FN inline
#endif
