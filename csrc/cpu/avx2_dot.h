// Eight-lane float32 helpers of the few-row dot-product kernels (small_linear_cpu.cpp,
// markov_small.h): a load that widens bfloat16, FMA and a horizontal sum. simd256.h has the
// same operations as the row passes' AVX2 backend, but its types exist only in builds whose
// backend is AVX2 (they would clash with simd512.h's overloads); these kernels run AVX2 code
// in AVX-512 builds too, so they share this small header instead.
#pragma once

#if defined(__AVX2__) && defined(__FMA__)
#define DSPARK_AVX2_DOT 1

#include <immintrin.h>

#include <c10/util/BFloat16.h>

namespace dspark {
namespace cpu {
namespace dot8 {

inline __m256 load(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load(const c10::BFloat16* p) {  // a bfloat16 is the high half of a float32
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}
inline __m256 fma(__m256 a, __m256 b, __m256 c) { return _mm256_fmadd_ps(a, b, c); }
inline float sum(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 t = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(t, _mm_shuffle_ps(t, t, 1)));
}

}  // namespace dot8
}  // namespace cpu
}  // namespace dspark

#endif
