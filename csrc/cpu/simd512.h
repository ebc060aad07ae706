// AVX-512 lane types for the lane-generic math of core/ (exp2_lanes, log2_pos_lanes,
// masked_scaled, prob, race keys...): 16 floats (F16), 16 uint32 (U16) and a lane mask (M16).
//
// Every operation here is the IEEE operation the scalar float code performs, applied lane by
// lane, so a core function instantiated with F16 gives, in each lane, exactly the bits the
// float instantiation (and the CUDA kernels) give:
//   a + b, a - b, a * b, a / b, -a, fma_f     correctly rounded, as in scalar code
//   min_f(a, b) = a < b ? a : b               vminps has exactly this rule (NaN -> b)
//   max_f(a, b) = a > b ? a : b               vmaxps likewise
//   comparisons                               ordered (false for NaN), != unordered
//   round_nearest_f                           vrndscaleps to nearest-even (exact)
//   scale_pow2_f(p, n) = p * 2^n              vscalefps: one rounding, as p * (2^n)
// Why not rely on auto-vectorisation: for these loops GCC kept reduction accumulators in
// memory and turned selects into chains of mask operations; written with these types the
// verification passes run about twice as fast (bench/RESULTS.md).
#pragma once

#include "simd_isa.h"

#if defined(DSPARK_SIMD512)

#include <immintrin.h>

#include <cstdint>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../core/fastmath.h"
#include "philox_simd.h"

DSPARK_SIMD_WARNINGS_OFF  // simd_isa.h

namespace dspark {
namespace cpu {

struct M16 {
  __mmask16 k;
};

struct F16 {
  __m512 v;
  F16() = default;
  F16(float c) : v(_mm512_set1_ps(c)) {}  // NOLINT: implicit broadcast, like a scalar constant
  explicit F16(__m512 x) : v(x) {}
  static F16 load(const float* p) { return F16(_mm512_loadu_ps(p)); }
  void store(float* p) const { _mm512_storeu_ps(p, v); }
};

struct U16 {
  __m512i v;
  U16() = default;
  explicit U16(__m512i x) : v(x) {}
  static U16 load(const uint32_t* p) { return U16(_mm512_loadu_si512(p)); }
};

inline F16 operator+(F16 a, F16 b) { return F16(_mm512_add_ps(a.v, b.v)); }
inline F16 operator-(F16 a, F16 b) { return F16(_mm512_sub_ps(a.v, b.v)); }
inline F16 operator*(F16 a, F16 b) { return F16(_mm512_mul_ps(a.v, b.v)); }
inline F16 operator/(F16 a, F16 b) { return F16(_mm512_div_ps(a.v, b.v)); }
inline F16 operator-(F16 a) {
  return F16(_mm512_castsi512_ps(
      _mm512_xor_si512(_mm512_castps_si512(a.v), _mm512_set1_epi32(static_cast<int>(0x80000000u)))));
}

inline M16 operator<(F16 a, F16 b) { return M16{_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline M16 operator>(F16 a, F16 b) { return M16{_mm512_cmp_ps_mask(a.v, b.v, _CMP_GT_OQ)}; }
inline M16 operator<=(F16 a, F16 b) { return M16{_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
inline M16 operator>=(F16 a, F16 b) { return M16{_mm512_cmp_ps_mask(a.v, b.v, _CMP_GE_OQ)}; }
inline M16 operator==(F16 a, F16 b) { return M16{_mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ)}; }
inline M16 operator!=(F16 a, F16 b) { return M16{_mm512_cmp_ps_mask(a.v, b.v, _CMP_NEQ_UQ)}; }

inline F16 fma_f(F16 a, F16 b, F16 c) { return F16(_mm512_fmadd_ps(a.v, b.v, c.v)); }
inline F16 min_f(F16 a, F16 b) { return F16(_mm512_min_ps(a.v, b.v)); }
inline F16 max_f(F16 a, F16 b) { return F16(_mm512_max_ps(a.v, b.v)); }
inline F16 select_f(M16 c, F16 a, F16 b) { return F16(_mm512_mask_blend_ps(c.k, b.v, a.v)); }
// |x| <= FLT_MAX, as the scalar form; one classification (NaN, +inf, -inf) instead of an
// abs and a compare.
inline M16 is_finite_f(F16 x) {
  constexpr int kNonFinite = 0x01 | 0x08 | 0x10 | 0x80;  // QNaN, +inf, -inf, SNaN
  return M16{static_cast<__mmask16>(~_mm512_fpclass_ps_mask(x.v, kNonFinite))};
}
inline F16 round_nearest_f(F16 x) {
  return F16(_mm512_roundscale_ps(x.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
inline F16 scale_pow2_f(F16 p, F16 n) { return F16(_mm512_scalef_ps(p.v, n.v)); }

inline U16 float_bits(F16 x) { return U16(_mm512_castps_si512(x.v)); }
inline F16 bits_float(U16 u) { return F16(_mm512_castsi512_ps(u.v)); }
inline U16 operator&(U16 a, uint32_t b) {
  return U16(_mm512_and_si512(a.v, _mm512_set1_epi32(static_cast<int>(b))));
}
inline U16 operator|(U16 a, uint32_t b) {
  return U16(_mm512_or_si512(a.v, _mm512_set1_epi32(static_cast<int>(b))));
}
inline U16 operator>>(U16 a, unsigned s) { return U16(_mm512_srli_epi32(a.v, s)); }
inline U16 operator<<(U16 a, unsigned s) { return U16(_mm512_slli_epi32(a.v, s)); }
inline F16 exponent_field_f(U16 bits) {
  return F16(_mm512_cvtepi32_ps(_mm512_srli_epi32(bits.v, 23)));
}
inline F16 small_uint_to_float(U16 u) { return F16(_mm512_cvtepi32_ps(u.v)); }  // u < 2^24

// Horizontal reductions of a whole vector (the row passes' final folds).
inline float reduce_max(F16 x) { return _mm512_reduce_max_ps(x.v); }
inline float reduce_add(F16 x) { return _mm512_reduce_add_ps(x.v); }

// Logits of lanes [i, i+16) of a row as floats; `tail` (0 < tail < 16) loads only the first
// `tail` lanes (masked: nothing past the row is read) and fills the rest with -inf.
inline F16 load_logits(const float* row, int64_t i) { return F16(_mm512_loadu_ps(row + i)); }
inline F16 load_logits(const c10::BFloat16* row, int64_t i) {
  const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i));
  return F16(_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)));
}
inline F16 load_logits(const c10::Half* row, int64_t i) {
  return F16(_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i))));
}
inline F16 load_logits(const double* row, int64_t i) {  // rounded to float, as to_float
  const __m256 lo = _mm512_cvtpd_ps(_mm512_loadu_pd(row + i));
  const __m256 hi = _mm512_cvtpd_ps(_mm512_loadu_pd(row + i + 8));
  return F16(_mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1));
}
inline F16 load_logits_tail(const float* row, int64_t i, int tail) {
  const __mmask16 k = static_cast<__mmask16>((1u << tail) - 1u);
  return F16(_mm512_mask_loadu_ps(_mm512_set1_ps(kNegInf), k, row + i));
}
inline F16 load_logits_tail(const double* row, int64_t i, int tail) {
  const __mmask16 k = static_cast<__mmask16>((1u << tail) - 1u);
  const __m256 lo = _mm512_cvtpd_ps(_mm512_maskz_loadu_pd(static_cast<__mmask8>(k), row + i));
  const __m256 hi =
      _mm512_cvtpd_ps(_mm512_maskz_loadu_pd(static_cast<__mmask8>(k >> 8), row + i + 8));
  const __m512 x = _mm512_insertf32x8(_mm512_castps256_ps512(lo), hi, 1);
  return F16(_mm512_mask_blend_ps(k, _mm512_set1_ps(kNegInf), x));
}
inline F16 load_logits_tail(const c10::BFloat16* row, int64_t i, int tail) {
  const __mmask16 k = static_cast<__mmask16>((1u << tail) - 1u);
  const __m256i h = _mm256_maskz_loadu_epi16(k, row + i);
  const __m512 x = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  return F16(_mm512_mask_blend_ps(k, _mm512_set1_ps(kNegInf), x));
}
inline F16 load_logits_tail(const c10::Half* row, int64_t i, int tail) {
  const __mmask16 k = static_cast<__mmask16>((1u << tail) - 1u);
  const __m512 x = _mm512_cvtph_ps(_mm256_maskz_loadu_epi16(k, row + i));
  return F16(_mm512_mask_blend_ps(k, _mm512_set1_ps(kNegInf), x));
}

// The backend row_passes_simd.h is instantiated with.
struct Avx512 {
  using F = F16;
  using U = U16;
  static constexpr int kLanes = 16;
  static constexpr const char* kName = "AVX-512";

  static bool any(M16 m) { return m.k != 0; }
  // 1.0 in lane `at` (0 <= at < 16), 0 elsewhere; all zero for at < 0.
  static F16 unit_lane(int at) {
    const __mmask16 k = at < 0 ? __mmask16{0} : static_cast<__mmask16>(1u << at);
    return F16(_mm512_maskz_mov_ps(k, _mm512_set1_ps(1.0f)));
  }
  // Uniforms of SoA Philox words (w[j][g]: word j of group g) in lane order (lane 4g + j):
  // sixteen groups (64 lanes, four vectors) at a time, interleaving words 0/1 and 2/3 and
  // then 64-bit pairs of those.
  static void words_to_lanes(const uint32_t (&w)[4][kPhiloxSimdGroups], F16* out) {
    const __m512i pair_lo =
        _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const __m512i pair_hi =
        _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const __m512i quad_lo = _mm512_setr_epi64(0, 8, 1, 9, 2, 10, 3, 11);
    const __m512i quad_hi = _mm512_setr_epi64(4, 12, 5, 13, 6, 14, 7, 15);
    const auto quad = [](__m512 a, __m512i idx, __m512 b) {
      return F16(_mm512_castpd_ps(
          _mm512_permutex2var_pd(_mm512_castps_pd(a), idx, _mm512_castps_pd(b))));
    };
    for (int g = 0; g < kPhiloxSimdGroups; g += 16) {
      F16 e[4];
      for (int j = 0; j < 4; ++j) e[j] = uniform_lanes(U16::load(w[j] + g));
      const __m512 t01_lo = _mm512_permutex2var_ps(e[0].v, pair_lo, e[1].v);
      const __m512 t01_hi = _mm512_permutex2var_ps(e[0].v, pair_hi, e[1].v);
      const __m512 t23_lo = _mm512_permutex2var_ps(e[2].v, pair_lo, e[3].v);
      const __m512 t23_hi = _mm512_permutex2var_ps(e[2].v, pair_hi, e[3].v);
      F16* o = out + g / 4;  // 16 groups = 64 lanes = 4 vectors
      o[0] = quad(t01_lo, quad_lo, t23_lo);
      o[1] = quad(t01_lo, quad_hi, t23_lo);
      o[2] = quad(t01_hi, quad_lo, t23_hi);
      o[3] = quad(t01_hi, quad_hi, t23_hi);
    }
  }
};

}  // namespace cpu
}  // namespace dspark

DSPARK_SIMD_WARNINGS_ON

#endif  // DSPARK_SIMD512
