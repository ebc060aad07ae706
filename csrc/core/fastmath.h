// Deterministic float32 exp and log for the sampling kernels.
//
// Why our own: the CPU kernels would otherwise call libm or Sleef and the CUDA kernels
// __expf/logf, which round differently, so the same seed could give different tokens on the
// two executors. These use only IEEE-exact operations (add, mul, explicit fmaf, bit casts,
// rounding to an integer, scaling by a power of two), which every executor rounds identically
// provided the compiler does not contract a*b+c on its own (the build passes -ffp-contract=off
// to the host compiler and --fmad=false to nvcc).
//
// Two families:
// - exp_f / log_f (natural base), used by the Markov head, whose log-sum-exp is an output.
// - exp2_f / log2_f (base 2), used by verification, which works in log2 units throughout
//   (a logit times log2(e)/T): exp2 needs no Cody-Waite reduction, so it is about half the
//   operations of exp, and the verification passes are bound by it.
// The base-2 functions are written once, lane-generically (exp2_lanes, log2_pos_lanes): F is
// float on every executor, or a SIMD vector of floats (cpu/simd512.h, cpu/simd256.h) with
// the same operations lane by lane. The float instantiation is the definition; a SIMD
// instantiation performs the same IEEE operations in the same order, so its lanes are
// bit-identical (tests/cpp/test_lanes.cpp checks it on hundreds of thousands of inputs).
//
// Accuracy: all within 2 ulp of the correctly rounded result on the ranges used here
// (tests/cpp/test_core.cpp and test_lanes.cpp check against double).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include <c10/macros/Macros.h>

#include "inline.h"

namespace dspark {

DSPARK_FN uint32_t float_bits(float x) {
#if defined(__CUDA_ARCH__)
  return __float_as_uint(x);
#else
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
#endif
}

DSPARK_FN float bits_float(uint32_t u) {
#if defined(__CUDA_ARCH__)
  return __uint_as_float(u);
#else
  float x;
  std::memcpy(&x, &u, sizeof(x));
  return x;
#endif
}

DSPARK_FN float fma_f(float a, float b, float c) { return ::fmaf(a, b, c); }

// min/max as plain selects (not fminf/fmaxf): GCC lowers these to SIMD min/max, while
// fminf/fmaxf become library calls (their NaN rules differ from the instructions); the
// select has the same meaning on every executor. The second operand wins for NaN.
DSPARK_FN float min_f(float a, float b) { return a < b ? a : b; }
DSPARK_FN float max_f(float a, float b) { return a > b ? a : b; }

constexpr float kNegInf = -__builtin_huge_valf();
constexpr float kFloatMax = 3.40282346638528859812e+38f;

// True for finite values (false for NaN and +-inf): |x| <= FLT_MAX fails for both.
DSPARK_FN bool is_finite_f(float x) { return ::fabsf(x) <= kFloatMax; }

// --- Scalar forms of the lane operations the lane-generic functions use -------------------

DSPARK_FN float select_f(bool c, float a, float b) { return c ? a : b; }

// Round to the nearest integer, ties to even, for |x| < 2^22 (the 1.5*2^23 trick: the sum
// rounds away the fraction). Exact, so every executor agrees; NaN stays NaN.
DSPARK_FN float round_nearest_f(float x) {
  const float shifter = 12582912.0f;
  return (x + shifter) - shifter;
}

// p * 2^n for p in [0.5, 2) and an integral float n in [-150, 127], correctly rounded (a
// result below 2^-126 is a subnormal, or 0): exactly what one scaling instruction (AVX-512
// vscalefps) computes. Scalar form: for n >= -126 one multiplication by 2^n (a normal
// number built from its bits); below that, p * 2^(n+126) first (exact: still normal) and
// then one rounding multiplication by 2^-126. n is read from the bits of n + 1.5*2^23 (no
// float-to-int conversion, which is undefined for NaN).
DSPARK_FN float pow2_normal_f(float n) {  // 2^n for integral n in [-126, 127]
  const uint32_t biased = float_bits(n + 12582912.0f) - 0x4B400000u + 127u;  // n + 127
  return bits_float(biased << 23);
}
DSPARK_FN float scale_pow2_f(float p, float n) {
  const float k = (n < -126.0f) ? -126.0f : 0.0f;
  return (p * pow2_normal_f(n - k)) * pow2_normal_f(k);
}

// The biased exponent field of x's bits (bits >> 23 for positive x), as a float.
DSPARK_FN float exponent_field_f(uint32_t bits) { return static_cast<float>(bits >> 23); }

// exp(x), Cephes-style: x = n ln2 + r, |r| <= ln2/2, degree-6 polynomial, scale by 2^n.
// Results below 2^-126 flush to zero (a probability that small never matters here);
// x = -inf gives 0, x > 88.37 gives +inf (every caller passes x <= ~0: log-probabilities and
// max-shifted logits), NaN gives NaN. The clamp is ordered so NaN passes
// through, and n is read from the bits of the rounding sum (no float-to-int conversion, which
// would be undefined for NaN); only one select remains, so the loops stay cheap.
DSPARK_FN float exp_f(float x) {
  const float xc = max_f(-87.33654f, min_f(88.72283f, x));
  // Round x/ln2 to nearest with the 1.5*2^23 trick (exact for |n| < 2^22).
  const float shifter = 12582912.0f;
  const float t = fma_f(xc, 1.44269504088896341f, shifter);
  const float n = t - shifter;
  float r = fma_f(n, -0.693359375f, xc);
  r = fma_f(n, 2.12194440e-4f, r);
  float p = 1.9875691500e-4f;
  p = fma_f(p, r, 1.3981999507e-3f);
  p = fma_f(p, r, 8.3334519073e-3f);
  p = fma_f(p, r, 4.1665795894e-2f);
  p = fma_f(p, r, 1.6666665459e-1f);
  p = fma_f(p, r, 5.0000001201e-1f);
  const float r2 = r * r;
  p = fma_f(p, r2, r);
  p = p + 1.0f;
  // 2^n from the exponent field; n in [-126, 128], and 128 gives +inf.
  const uint32_t n_bits = float_bits(t) - float_bits(shifter);  // n mod 2^32
  const float y = p * bits_float((n_bits + 127u) << 23);
  return (x < -87.33654f) ? 0.0f : y;
}

// log(x) for a positive normal x (no special cases: the hot loops only pass such values, e.g.
// uniforms in [2^-24, 1) and -log of those). Cephes-style: x = m 2^e with m in
// [sqrt(1/2), sqrt(2)), log(1+f) by a degree-9 polynomial.
DSPARK_FN float log_pos_f(float x) {
  const uint32_t bits = float_bits(x);
  int32_t e = static_cast<int32_t>((bits >> 23) & 0xFFu) - 126;
  float m = bits_float((bits & 0x007FFFFFu) | 0x3F000000u);  // m in [0.5, 1)
  const bool small = m < 0.707106781186547524f;
  e = small ? e - 1 : e;
  m = small ? m + m : m;
  const float f = m - 1.0f;
  const float z = f * f;
  float p = 7.0376836292e-2f;
  p = fma_f(p, f, -1.1514610310e-1f);
  p = fma_f(p, f, 1.1676998740e-1f);
  p = fma_f(p, f, -1.2420140846e-1f);
  p = fma_f(p, f, 1.4249322787e-1f);
  p = fma_f(p, f, -1.6668057665e-1f);
  p = fma_f(p, f, 2.0000714765e-1f);
  p = fma_f(p, f, -2.4999993993e-1f);
  p = fma_f(p, f, 3.3333331174e-1f);
  float y = p * f * z;
  const float ef = static_cast<float>(e);
  y = fma_f(ef, -2.12194440e-4f, y);
  y = fma_f(-0.5f, z, y);
  float r = f + y;
  return fma_f(ef, 0.693359375f, r);
}

// log(x) for any x: log(0) = -inf, log(+inf) = +inf, x < 0 or NaN gives NaN. Subnormal
// inputs are treated as 0.
DSPARK_FN float log_f(float x) {
  float r = log_pos_f(x);
  r = (x < 1.17549435e-38f) ? kNegInf : r;  // 0 and subnormals
  r = (x == __builtin_huge_valf()) ? x : r;
  r = (x < 0.0f || x != x) ? __builtin_nanf("") : r;
  return r;
}

// --- Base 2 (verification) ---------------------------------------------------------------

// 2^x = 2^n * 2^r with n = round(x), |r| <= 1/2, 2^r by a degree-6 polynomial (Cephes exp2f
// coefficients), scaled by 2^n in one rounding (scale_pow2_f). Below 2^-126 the result is a
// subnormal, and 0 from x <= -150 on (so -inf gives exactly 0 without a separate select:
// 2^-150 rounds to 0); NaN gives NaN; x >= 127 saturates at 2^127 (every caller passes a
// log2-probability, <= 0; the clamp keeps 2^n finite on every executor).
// Subnormal results assume the CPU runs without flush-to-zero (the default; PyTorch turns it
// on only through torch.set_flush_denormal(True)); they are probabilities below 1e-38.
// exp2_le127_lanes is the same function for arguments known to be <= 127 (x - max in a
// log-sum-exp): it skips the upper clamp, which is the identity there.
template <typename F>
DSPARK_FN F exp2_le127_lanes(F x) {
  const F xc = max_f(F(-150.0f), x);  // NaN passes through
  const F n = round_nearest_f(xc);
  const F r = xc - n;  // exact
  F p = F(1.535336188319500e-4f);
  p = fma_f(p, r, F(1.339887440266574e-3f));
  p = fma_f(p, r, F(9.618437357674640e-3f));
  p = fma_f(p, r, F(5.550332471162809e-2f));
  p = fma_f(p, r, F(2.402264791363012e-1f));
  p = fma_f(p, r, F(6.931472028550421e-1f));
  p = fma_f(p, r, F(1.0f));
  return scale_pow2_f(p, n);
}

template <typename F>
DSPARK_FN F exp2_lanes(F x) {
  return exp2_le127_lanes(min_f(F(127.0f), x));  // NaN passes through
}

DSPARK_FN float exp2_f(float x) { return exp2_lanes(x); }

// log2(x) for a positive normal x (no special cases; the hot loops only pass such values).
// x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by the degree-9 polynomial of log_pos_f,
// then times log2(e) split as 1 + 0.4426950... so the leading term stays exact (Cephes log2f).
template <typename F>
DSPARK_FN F log2_pos_lanes(F x) {
  const auto bits = float_bits(x);
  F e = exponent_field_f(bits) - F(126.0f);
  F m = bits_float((bits & 0x007FFFFFu) | 0x3F000000u);  // m in [0.5, 1)
  const auto small = m < F(0.707106781186547524f);
  e = select_f(small, e - F(1.0f), e);
  m = select_f(small, m + m, m);
  const F f = m - F(1.0f);
  const F z = f * f;
  F p = F(7.0376836292e-2f);
  p = fma_f(p, f, F(-1.1514610310e-1f));
  p = fma_f(p, f, F(1.1676998740e-1f));
  p = fma_f(p, f, F(-1.2420140846e-1f));
  p = fma_f(p, f, F(1.4249322787e-1f));
  p = fma_f(p, f, F(-1.6668057665e-1f));
  p = fma_f(p, f, F(2.0000714765e-1f));
  p = fma_f(p, f, F(-2.4999993993e-1f));
  p = fma_f(p, f, F(3.3333331174e-1f));
  F y = p * f * z;
  y = fma_f(F(-0.5f), z, y);  // y = log(1 + f) - f
  const F log2e_minus_1 = F(0.44269504088896340736f);
  F r = y * log2e_minus_1;
  r = fma_f(f, log2e_minus_1, r);
  r = r + y;
  r = r + f;
  return r + e;
}

DSPARK_FN float log2_pos_f(float x) { return log2_pos_lanes(x); }

// log2(x) for any x: log2(0) = -inf, log2(+inf) = +inf, x < 0 or NaN gives NaN. Subnormal
// inputs are treated as 0.
DSPARK_FN float log2_f(float x) {
  float r = log2_pos_f(x);
  r = (x < 1.17549435e-38f) ? kNegInf : r;
  r = (x == __builtin_huge_valf()) ? x : r;
  r = (x < 0.0f || x != x) ? __builtin_nanf("") : r;
  return r;
}

}  // namespace dspark
