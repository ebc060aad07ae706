// AVX2 lane types for the lane-generic math of core/: 8 floats (F8), 8 uint32 (U8) and a lane
// mask (M8), for builds without AVX-512 (e.g. AMD Zen 2/3, older Xeons). Same contract as
// simd512.h: each operation is the IEEE operation the scalar float code performs, lane by
// lane, so core functions instantiated with F8 give the scalar (and CUDA) bits:
//   a + b, a - b, a * b, a / b, -a, fma_f     correctly rounded
//   min_f / max_f                             vminps / vmaxps: a < b ? a : b, a > b ? a : b
//   comparisons                               ordered (false for NaN), != unordered
//   round_nearest_f                           vroundps to nearest-even (exact)
//   scale_pow2_f(p, n)                        the scalar form itself (AVX2 has no vscalefps):
//                                             2^m built from its exponent bits, two products
#pragma once

#include "simd_isa.h"

#if defined(DSPARK_SIMD256)

#include <immintrin.h>

#include <cstdint>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../core/fastmath.h"
#include "../core/philox.h"
#include "philox_simd.h"

namespace dspark {
namespace cpu {

struct M8 {
  __m256 m;  // all-ones lanes are true
};

struct F8 {
  __m256 v;
  F8() = default;
  F8(float c) : v(_mm256_set1_ps(c)) {}  // NOLINT: implicit broadcast, like a scalar constant
  explicit F8(__m256 x) : v(x) {}
  static F8 load(const float* p) { return F8(_mm256_loadu_ps(p)); }
  void store(float* p) const { _mm256_storeu_ps(p, v); }
};

struct U8 {
  __m256i v;
  U8() = default;
  explicit U8(__m256i x) : v(x) {}
  static U8 load(const uint32_t* p) {
    return U8(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  }
};

inline F8 operator+(F8 a, F8 b) { return F8(_mm256_add_ps(a.v, b.v)); }
inline F8 operator-(F8 a, F8 b) { return F8(_mm256_sub_ps(a.v, b.v)); }
inline F8 operator*(F8 a, F8 b) { return F8(_mm256_mul_ps(a.v, b.v)); }
inline F8 operator/(F8 a, F8 b) { return F8(_mm256_div_ps(a.v, b.v)); }
inline F8 operator-(F8 a) { return F8(_mm256_xor_ps(a.v, _mm256_set1_ps(-0.0f))); }

inline M8 operator<(F8 a, F8 b) { return M8{_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline M8 operator>(F8 a, F8 b) { return M8{_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
inline M8 operator<=(F8 a, F8 b) { return M8{_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
inline M8 operator>=(F8 a, F8 b) { return M8{_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
inline M8 operator==(F8 a, F8 b) { return M8{_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
inline M8 operator!=(F8 a, F8 b) { return M8{_mm256_cmp_ps(a.v, b.v, _CMP_NEQ_UQ)}; }

inline F8 fma_f(F8 a, F8 b, F8 c) { return F8(_mm256_fmadd_ps(a.v, b.v, c.v)); }
inline F8 min_f(F8 a, F8 b) { return F8(_mm256_min_ps(a.v, b.v)); }
inline F8 max_f(F8 a, F8 b) { return F8(_mm256_max_ps(a.v, b.v)); }
inline F8 select_f(M8 c, F8 a, F8 b) { return F8(_mm256_blendv_ps(b.v, a.v, c.m)); }
inline M8 is_finite_f(F8 x) {  // |x| <= FLT_MAX
  const __m256 abs = _mm256_andnot_ps(_mm256_set1_ps(-0.0f), x.v);
  return M8{_mm256_cmp_ps(abs, _mm256_set1_ps(kFloatMax), _CMP_LE_OQ)};
}
inline F8 round_nearest_f(F8 x) {
  return F8(_mm256_round_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
// 2^m for integral m in [-126, 127] from its exponent bits (m is exact as an int32).
inline F8 pow2_normal_f(F8 m) {
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(m.v), _mm256_set1_epi32(127));
  return F8(_mm256_castsi256_ps(_mm256_slli_epi32(e, 23)));
}
inline F8 scale_pow2_f(F8 p, F8 n) {  // as fastmath.h scale_pow2_f, lane by lane
  const F8 k = select_f(n < F8(-126.0f), F8(-126.0f), F8(0.0f));
  return (p * pow2_normal_f(n - k)) * pow2_normal_f(k);
}

inline U8 float_bits(F8 x) { return U8(_mm256_castps_si256(x.v)); }
inline F8 bits_float(U8 u) { return F8(_mm256_castsi256_ps(u.v)); }
inline U8 operator&(U8 a, uint32_t b) {
  return U8(_mm256_and_si256(a.v, _mm256_set1_epi32(static_cast<int>(b))));
}
inline U8 operator|(U8 a, uint32_t b) {
  return U8(_mm256_or_si256(a.v, _mm256_set1_epi32(static_cast<int>(b))));
}
inline U8 operator>>(U8 a, unsigned s) { return U8(_mm256_srli_epi32(a.v, static_cast<int>(s))); }
inline U8 operator<<(U8 a, unsigned s) { return U8(_mm256_slli_epi32(a.v, static_cast<int>(s))); }
inline F8 exponent_field_f(U8 bits) {
  return F8(_mm256_cvtepi32_ps(_mm256_srli_epi32(bits.v, 23)));
}
inline F8 small_uint_to_float(U8 u) { return F8(_mm256_cvtepi32_ps(u.v)); }  // u < 2^24

// Horizontal reductions, in a fixed order.
inline float reduce_max(F8 x) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(x.v), _mm256_extractf128_ps(x.v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}
inline float reduce_add(F8 x) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(x.v), _mm256_extractf128_ps(x.v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Logits of lanes [i, i+8) of a row as floats.
inline F8 load_logits(const float* row, int64_t i) { return F8(_mm256_loadu_ps(row + i)); }
inline F8 load_logits(const c10::BFloat16* row, int64_t i) {
  const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i));
  return F8(_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16)));
}
inline F8 load_logits(const c10::Half* row, int64_t i) {
  return F8(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(row + i))));
}
inline F8 load_logits(const double* row, int64_t i) {  // rounded to float, as to_float
  const __m128 lo = _mm256_cvtpd_ps(_mm256_loadu_pd(row + i));
  const __m128 hi = _mm256_cvtpd_ps(_mm256_loadu_pd(row + i + 4));
  return F8(_mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1));
}
// The first `tail` (0 < tail < 8) lanes, the rest -inf; nothing past the row is read (the
// lanes are copied into a padded buffer: at most once per row chunk).
template <typename scalar_t>
inline F8 load_logits_tail(const scalar_t* row, int64_t i, int tail) {
  alignas(32) scalar_t pad[8];
  for (int j = 0; j < 8; ++j) pad[j] = j < tail ? row[i + j] : scalar_t(0);
  const F8 x = load_logits(pad, 0);
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256 keep = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(tail), lane));
  return F8(_mm256_blendv_ps(_mm256_set1_ps(kNegInf), x.v, keep));
}

// The backend row_passes_simd.h is instantiated with.
struct Avx2 {
  using F = F8;
  using U = U8;
  static constexpr int kLanes = 8;
  static constexpr const char* kName = "AVX2";

  static bool any(M8 m) { return _mm256_movemask_ps(m.m) != 0; }
  // 1.0 in lane `at` (0 <= at < 8), 0 elsewhere; all zero for at < 0.
  static F8 unit_lane(int at) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256 hit = _mm256_castsi256_ps(_mm256_cmpeq_epi32(lane, _mm256_set1_epi32(at)));
    return F8(_mm256_and_ps(hit, _mm256_set1_ps(1.0f)));
  }
  // Uniforms of SoA Philox words (w[j][g]: word j of group g) in lane order (lane 4g + j):
  // eight groups (32 lanes, four vectors) at a time, a 4x8 transpose.
  static void words_to_lanes(const uint32_t (&w)[4][kPhiloxSimdGroups], F8* out) {
    for (int g = 0; g < kPhiloxSimdGroups; g += 8) {
      F8 r[4];
      for (int j = 0; j < 4; ++j) r[j] = uniform_lanes(U8::load(w[j] + g));
      const __m256 t0 = _mm256_unpacklo_ps(r[0].v, r[1].v);  // groups 0,1 | 4,5 of words 0,1
      const __m256 t1 = _mm256_unpackhi_ps(r[0].v, r[1].v);  // groups 2,3 | 6,7
      const __m256 t2 = _mm256_unpacklo_ps(r[2].v, r[3].v);
      const __m256 t3 = _mm256_unpackhi_ps(r[2].v, r[3].v);
      const __m256 g04 = _mm256_shuffle_ps(t0, t2, 0x44);  // group 0 | group 4, words 0-3
      const __m256 g15 = _mm256_shuffle_ps(t0, t2, 0xEE);
      const __m256 g26 = _mm256_shuffle_ps(t1, t3, 0x44);
      const __m256 g37 = _mm256_shuffle_ps(t1, t3, 0xEE);
      F8* o = out + g / 2;  // 8 groups = 32 lanes = 4 vectors
      o[0] = F8(_mm256_permute2f128_ps(g04, g15, 0x20));  // groups 0, 1
      o[1] = F8(_mm256_permute2f128_ps(g26, g37, 0x20));  // groups 2, 3
      o[2] = F8(_mm256_permute2f128_ps(g04, g15, 0x31));  // groups 4, 5
      o[3] = F8(_mm256_permute2f128_ps(g26, g37, 0x31));  // groups 6, 7
    }
  }
};

}  // namespace cpu
}  // namespace dspark

#endif  // DSPARK_SIMD256
