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

namespace dspark {
namespace cpu {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

#if defined(__AVX512F__)
// GCC 12's avx512fintrin.h passes an intentionally undefined register through the unmasked
// intrinsics and then warns about it (-W[maybe-]uninitialized, a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif
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
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
#elif defined(__AVX2__)
constexpr int kPhiloxSimdGroups = 8;

inline void mulhilo_x8(__m256i m, __m256i c, __m256i* hi, __m256i* lo) {
  const __m256i even = _mm256_mul_epu32(c, m);
  const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(c, 32), m);
  *lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
  *hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
}

inline void philox_simd_block(const RngStream& s, uint32_t g0, uint32_t* w0, uint32_t* w1,
                              uint32_t* w2, uint32_t* w3) {
  __m256i c0 = _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(g0)),
                                _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  __m256i c1 = _mm256_set1_epi32(static_cast<int>(s.off_lo));
  __m256i c2 = _mm256_set1_epi32(static_cast<int>(s.off_hi));
  __m256i c3 = _mm256_set1_epi32(static_cast<int>(s.tag));
  const __m256i m0 = _mm256_set1_epi64x(kPhiloxM0), m1 = _mm256_set1_epi64x(kPhiloxM1);
  uint32_t k0 = s.k0, k1 = s.k1;
  for (int round = 0; round < 10; ++round) {
    __m256i hi0, lo0, hi1, lo1;
    mulhilo_x8(m0, c0, &hi0, &lo0);
    mulhilo_x8(m1, c2, &hi1, &lo1);
    c0 = _mm256_xor_si256(_mm256_xor_si256(hi1, c1), _mm256_set1_epi32(static_cast<int>(k0)));
    c2 = _mm256_xor_si256(_mm256_xor_si256(hi0, c3), _mm256_set1_epi32(static_cast<int>(k1)));
    c1 = lo1;
    c3 = lo0;
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w0), c0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w1), c1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w2), c2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(w3), c3);
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
