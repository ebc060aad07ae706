// Which explicit-SIMD backend of the CPU row passes this build uses (row_passes_simd.h):
// DSPARK_SIMD512 (cpu::Avx512, simd512.h) when AVX-512 F/BW/VL/DQ are enabled, else
// DSPARK_SIMD256 (cpu::Avx2, simd256.h) with AVX2 + FMA + F16C, else neither (the portable
// passes of row_passes.h). One place, so every header agrees whatever the include order.
#pragma once

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512DQ__)
#define DSPARK_SIMD512 1
#elif defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define DSPARK_SIMD256 1
#endif

// GCC 12's avx512fintrin.h passes an intentionally undefined register through the unmasked
// intrinsics and then warns about it (-W[maybe-]uninitialized, a known false positive), also
// wherever those are inlined: the SIMD headers wrap their code in these.
#if defined(__GNUC__) && !defined(__clang__)
#define DSPARK_SIMD_WARNINGS_OFF                                 \
  _Pragma("GCC diagnostic push")                                 \
  _Pragma("GCC diagnostic ignored \"-Wmaybe-uninitialized\"")    \
  _Pragma("GCC diagnostic ignored \"-Wuninitialized\"")
#define DSPARK_SIMD_WARNINGS_ON _Pragma("GCC diagnostic pop")
#else
#define DSPARK_SIMD_WARNINGS_OFF
#define DSPARK_SIMD_WARNINGS_ON
#endif
