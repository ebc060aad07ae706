// Counter-based Philox4x32-10 (Salmon et al., SC'11) and the stream layout of design §2.
//
// Header-only and C10_HOST_DEVICE: the CPU kernels, the CUDA kernels and the C++ unit tests
// all include this one definition, so the same (seed, offset, position, purpose, lane) gives
// the same 32-bit word, and the same uniform, on every executor.
#pragma once

#include <cstdint>

#include <c10/macros/Macros.h>

#include "inline.h"

namespace dspark {

struct Philox4x32Out {
  uint32_t v[4];
};

DSPARK_FN uint32_t philox_mulhilo(uint32_t a, uint32_t b, uint32_t* hi) {
  const uint64_t product = static_cast<uint64_t>(a) * static_cast<uint64_t>(b);
  *hi = static_cast<uint32_t>(product >> 32);
  return static_cast<uint32_t>(product);
}

// Ten rounds of Philox4x32 on counter c under key k (Random123 constants).
DSPARK_FN Philox4x32Out philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2,
                                                   uint32_t c3, uint32_t k0, uint32_t k1) {
  constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;
  constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;
#if defined(__CUDA_ARCH__)
#pragma unroll
#elif defined(__GNUC__) && !defined(__clang__) && !defined(__CUDACC__)
#pragma GCC unroll 10
#endif
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, hi1;
    const uint32_t lo0 = philox_mulhilo(kM0, c0, &hi0);
    const uint32_t lo1 = philox_mulhilo(kM1, c2, &hi1);
    const uint32_t n0 = hi1 ^ c1 ^ k0;
    const uint32_t n2 = hi0 ^ c3 ^ k1;
    c0 = n0;
    c1 = lo1;
    c2 = n2;
    c3 = lo0;
    k0 += kW0;
    k1 += kW1;
  }
  return Philox4x32Out{{c0, c1, c2, c3}};
}

// Purposes are disjoint counter ranges (design §2), so draft sampling, acceptance tests and
// residual/bonus sampling of the same (seed, offset, position) never share a word.
enum class RngPurpose : uint32_t {
  kDraftSample = 1,   // Markov-head drafting (Gumbel over the vocabulary)
  kAccept = 2,        // acceptance uniforms (token-wise u_k, block-verification eta_i)
  kResidual = 3,      // correction / bonus / fallback sampling (Gumbel over the vocabulary)
};

// Counter layout: c0 = vocabulary lane / 4 (one Philox call serves four lanes), c1/c2 = the
// 64-bit step offset, c3 = purpose << 24 | position. Key = the 64-bit per-row seed.
struct RngStream {
  uint32_t k0, k1;      // key: seed low / high word
  uint32_t off_lo, off_hi;
  uint32_t tag;         // purpose << 24 | position

  DSPARK_FN static RngStream make(int64_t seed, int64_t offset, int64_t position,
                                        RngPurpose purpose) {
    RngStream s;
    const uint64_t useed = static_cast<uint64_t>(seed);
    const uint64_t uoff = static_cast<uint64_t>(offset);
    s.k0 = static_cast<uint32_t>(useed);
    s.k1 = static_cast<uint32_t>(useed >> 32);
    s.off_lo = static_cast<uint32_t>(uoff);
    s.off_hi = static_cast<uint32_t>(uoff >> 32);
    s.tag = (static_cast<uint32_t>(purpose) << 24) |
            (static_cast<uint32_t>(position) & 0x00FFFFFFu);
    return s;
  }

  // The four 32-bit words of lanes 4*group .. 4*group+3.
  DSPARK_FN Philox4x32Out words(uint32_t group) const {
    return philox4x32_10(group, off_lo, off_hi, tag, k0, k1);
  }
};

// 23 random bits -> (2m+1) * 2^-24: exactly representable in float32 (and float64), strictly
// inside (0, 1): the smallest value is 2^-24 and the largest 1 - 2^-24.
// Lane-generic (U = uint32_t, or a SIMD vector of them: cpu/simd512.h, cpu/simd256.h).
DSPARK_FN float small_uint_to_float(uint32_t u) { return static_cast<float>(u); }  // exact < 2^24

template <typename U>
DSPARK_FN auto uniform_lanes(U word) {
  const auto odd = small_uint_to_float(((word >> 9u) << 1u) | 1u);
  return odd * decltype(odd)(5.9604644775390625e-08f);  // 2^-24
}

DSPARK_FN float uniform_from_word(uint32_t word) { return uniform_lanes(word); }

}  // namespace dspark
