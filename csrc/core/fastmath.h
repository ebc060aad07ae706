// Deterministic float32 exp and log for the sampling kernels.
//
// Why our own: the CPU kernels would otherwise call libm or Sleef and the CUDA kernels
// __expf/logf, which round differently, so the same seed could give different tokens on the
// two executors. These use only IEEE-exact operations (add, mul, explicit fmaf, bit casts),
// which every executor rounds identically provided the compiler does not contract a*b+c on
// its own (the build passes -ffp-contract=off to the host compiler and --fmad=false to nvcc).
// Written branch-free so GCC vectorises the CPU loops that call them.
// Accuracy: both within 2 ulp of the correctly rounded result on the ranges used here
// (tests/test_fastmath.py checks against float64).
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

}  // namespace dspark
