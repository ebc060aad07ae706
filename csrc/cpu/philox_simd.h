// Philox4x32-10 for many consecutive counter groups of one stream at once, in SIMD registers.
//
// Same words as core/philox.h (the scalar definition; tests/cpp checks them equal). Why it
// exists: GCC vectorises the scalar rounds with 64-bit multiplies (vpmullq) and permutes,
// while the 32x32->64 multiply the rounds need is vpmuludq on even lanes; written with
// intrinsics the AVX-512 version runs about twice as fast, and the CPU sampling passes spend
// a third of their time here.
#pragma once

#include <cstdint>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#include "../core/philox.h"
#include "simd_isa.h"

namespace dspark {
namespace cpu {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

#if defined(__AVX512F__)
DSPARK_SIMD_WARNINGS_OFF  // simd_isa.h
constexpr int kPhiloxSimdGroups = 32;

// Each counter word lives in the low half of a 64-bit lane, eight groups per register: then
// one vpmuludq gives both halves of a 32x32->64 product in place (lo in the low half, where
// the next round reads it; hi one shift away), and the upper halves can hold garbage, since
// every multiply reads only low halves and the xors are lane-wise. Half the work of keeping
// sixteen 32-bit words per register, which needs shuffles and blends around every multiply.
struct PhiloxHalf {
  __m512i c0, c1, c2, c3;
};

inline void philox_round(PhiloxHalf& h, __m512i m0, __m512i m1, __m512i k0, __m512i k1) {
  const __m512i p0 = _mm512_mul_epu32(h.c0, m0);
  const __m512i p1 = _mm512_mul_epu32(h.c2, m1);
  // 0x96: three-way xor.
  h.c0 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p1, 32), h.c1, k0, 0x96);
  h.c2 = _mm512_ternarylogic_epi64(_mm512_srli_epi64(p0, 32), h.c3, k1, 0x96);
  h.c1 = p1;
  h.c3 = p0;
}

// Words of groups g0 .. g0 + kPhiloxSimdGroups - 1 into w0..w3[0..kPhiloxSimdGroups-1].
// Four independent halves per round: a round is a chain multiply -> shift -> xor of about
// seven cycles, so fewer in flight would leave the vector units idle.
inline void philox_simd_block(const RngStream& s, uint32_t g0, uint32_t* w0, uint32_t* w1,
                              uint32_t* w2, uint32_t* w3) {
  constexpr int kHalves = kPhiloxSimdGroups / 8;
  const __m512i base = _mm512_set1_epi64(static_cast<long long>(g0));
  const __m512i c1 = _mm512_set1_epi64(s.off_lo), c2 = _mm512_set1_epi64(s.off_hi);
  const __m512i c3 = _mm512_set1_epi64(s.tag);
  PhiloxHalf h[kHalves];
  for (int i = 0; i < kHalves; ++i) {
    const __m512i lanes = _mm512_add_epi64(_mm512_setr_epi64(0, 1, 2, 3, 4, 5, 6, 7),
                                           _mm512_set1_epi64(8 * i));
    h[i] = PhiloxHalf{_mm512_add_epi64(base, lanes), c1, c2, c3};
  }
  const __m512i m0 = _mm512_set1_epi64(kPhiloxM0), m1 = _mm512_set1_epi64(kPhiloxM1);
  uint32_t k0 = s.k0, k1 = s.k1;
  for (int round = 0; round < 10; ++round) {
    const __m512i vk0 = _mm512_set1_epi32(static_cast<int>(k0));
    const __m512i vk1 = _mm512_set1_epi32(static_cast<int>(k1));
    for (int i = 0; i < kHalves; ++i) philox_round(h[i], m0, m1, vk0, vk1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  // Low halves of two halves' lanes per 16 groups.
  const __m512i low = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  for (int i = 0; i < kHalves; i += 2) {
    const int g = 8 * i;
    _mm512_storeu_si512(w0 + g, _mm512_permutex2var_epi32(h[i].c0, low, h[i + 1].c0));
    _mm512_storeu_si512(w1 + g, _mm512_permutex2var_epi32(h[i].c1, low, h[i + 1].c1));
    _mm512_storeu_si512(w2 + g, _mm512_permutex2var_epi32(h[i].c2, low, h[i + 1].c2));
    _mm512_storeu_si512(w3 + g, _mm512_permutex2var_epi32(h[i].c3, low, h[i + 1].c3));
  }
}
DSPARK_SIMD_WARNINGS_ON
#elif defined(__AVX2__)
constexpr int kPhiloxSimdGroups = 16;

// The AVX-512 layout (each word in the low half of a 64-bit lane) with four groups per
// register, four registers per word for ILP.
struct PhiloxQuarter {
  __m256i c0, c1, c2, c3;
};

inline void philox_round(PhiloxQuarter& h, __m256i m0, __m256i m1, __m256i k0, __m256i k1) {
  const __m256i p0 = _mm256_mul_epu32(h.c0, m0);
  const __m256i p1 = _mm256_mul_epu32(h.c2, m1);
  h.c0 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p1, 32), h.c1), k0);
  h.c2 = _mm256_xor_si256(_mm256_xor_si256(_mm256_srli_epi64(p0, 32), h.c3), k1);
  h.c1 = p1;
  h.c3 = p0;
}

inline void philox_simd_block(const RngStream& s, uint32_t g0, uint32_t* w0, uint32_t* w1,
                              uint32_t* w2, uint32_t* w3) {
  constexpr int kQuarters = kPhiloxSimdGroups / 4;
  const __m256i base = _mm256_set1_epi64x(static_cast<long long>(g0));
  const __m256i c1 = _mm256_set1_epi64x(s.off_lo), c2 = _mm256_set1_epi64x(s.off_hi);
  const __m256i c3 = _mm256_set1_epi64x(s.tag);
  PhiloxQuarter h[kQuarters];
  for (int i = 0; i < kQuarters; ++i) {
    const __m256i lanes = _mm256_setr_epi64x(4 * i, 4 * i + 1, 4 * i + 2, 4 * i + 3);
    h[i] = PhiloxQuarter{_mm256_add_epi64(base, lanes), c1, c2, c3};
  }
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0), m1 = _mm256_set1_epi64x(kPhiloxM1);
  uint32_t k0 = s.k0, k1 = s.k1;
  for (int round = 0; round < 10; ++round) {
    const __m256i vk0 = _mm256_set1_epi32(static_cast<int>(k0));
    const __m256i vk1 = _mm256_set1_epi32(static_cast<int>(k1));
    for (int i = 0; i < kQuarters; ++i) philox_round(h[i], m0, m1, vk0, vk1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  // Low halves of two registers' lanes per 8 groups: even 32-bit words, in order.
  const __m256i even = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
  const auto pack = [&](__m256i a, __m256i b, uint32_t* out) {
    const __m256i lo = _mm256_permutevar8x32_epi32(a, even);  // a's words in the low 128
    const __m256i hi = _mm256_permutevar8x32_epi32(b, even);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), _mm256_permute2x128_si256(lo, hi, 0x20));
  };
  for (int i = 0; i < kQuarters; i += 2) {
    const int g = 4 * i;
    pack(h[i].c0, h[i + 1].c0, w0 + g);
    pack(h[i].c1, h[i + 1].c1, w1 + g);
    pack(h[i].c2, h[i + 1].c2, w2 + g);
    pack(h[i].c3, h[i + 1].c3, w3 + g);
  }
}
#else
constexpr int kPhiloxSimdGroups = 0;
#endif

// Words of groups g0 .. g0+groups-1 of stream s into w0..w3 (SoA): SIMD blocks, scalar tail.
inline void philox_fill(const RngStream& s, uint32_t g0, int64_t groups, uint32_t* w0,
                        uint32_t* w1, uint32_t* w2, uint32_t* w3) {
  int64_t g = 0;
#if defined(__AVX512F__) || defined(__AVX2__)
  for (; g + kPhiloxSimdGroups <= groups; g += kPhiloxSimdGroups) {
    philox_simd_block(s, g0 + static_cast<uint32_t>(g), w0 + g, w1 + g, w2 + g, w3 + g);
  }
#endif
  for (; g < groups; ++g) {
    const Philox4x32Out o = s.words(g0 + static_cast<uint32_t>(g));
    w0[g] = o.v[0];
    w1[g] = o.v[1];
    w2[g] = o.v[2];
    w3[g] = o.v[3];
  }
}

}  // namespace cpu
}  // namespace dspark
