// CPU kernel of dspark::small_linear: y = x W^T + b for a few rows of x (the drafter's decode
// step: 7 block rows, or a few more with the newly committed context), float32.
//
// Why: at M = 7 MKL's sgemm runs compute-bound at ~30 GFLOP/s on an AVX2 core (its kernels
// and packing are built for large M), which made the drafter's LM head and MLP GEMMs most of
// a DSpark round (bench/RESULTS.md, issue 17). Here each weight row is read once from memory
// and kept in L1 while every row of x meets it: tiles of 2 rows of x x 4 rows of W, eight-wide
// FMA accumulators, K walked in steps of 8. Each output is one float32 dot product (its lane
// order differs from BLAS's, as any two BLAS builds' do). Larger M, other dtypes, and builds
// without AVX2 + FMA take at::linear, so the op computes exactly F.linear's function on every
// input.
#include <algorithm>
#include <vector>

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../small_linear_args.h"
#include "avx2_dot.h"

namespace dspark {
namespace cpu {
namespace {

#if defined(DSPARK_AVX2_DOT)
// The tail of one output: x[m] . w[n] over k in [k8, K), plus the bias.
inline float finish(float s, const float* xr, const float* wr, int64_t k8, int64_t K,
                    const float* bias, int64_t n) {
  for (int64_t k = k8; k < K; ++k) s += xr[k] * wr[k];
  return s + (bias != nullptr ? bias[n] : 0.0f);
}

// Rows m0 and m0 + 1 of x against weight rows [n0, n0 + 4): eight named accumulators
// (avx2_dot.h), so they stay in registers (an accumulator array was spilled to the stack
// every step).
inline void tile2(const float* __restrict__ x, const float* __restrict__ w,
                  const float* __restrict__ bias, float* __restrict__ y, int64_t m0, int64_t n0,
                  int64_t N, int64_t K) {
  const float *w0 = w + n0 * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
  const float *x0 = x + m0 * K, *x1 = x0 + K;
  __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a03 = a00;
  __m256 a10 = a00, a11 = a00, a12 = a00, a13 = a00;
  const int64_t k8 = K - K % 8;
  for (int64_t k = 0; k < k8; k += 8) {
    const __m256 v0 = dot8::load(w0 + k), v1 = dot8::load(w1 + k);
    const __m256 v2 = dot8::load(w2 + k), v3 = dot8::load(w3 + k);
    const __m256 p = dot8::load(x0 + k), q = dot8::load(x1 + k);
    a00 = dot8::fma(p, v0, a00);
    a01 = dot8::fma(p, v1, a01);
    a02 = dot8::fma(p, v2, a02);
    a03 = dot8::fma(p, v3, a03);
    a10 = dot8::fma(q, v0, a10);
    a11 = dot8::fma(q, v1, a11);
    a12 = dot8::fma(q, v2, a12);
    a13 = dot8::fma(q, v3, a13);
  }
  float* y0 = y + m0 * N + n0;
  float* y1 = y0 + N;
  y0[0] = finish(dot8::sum(a00), x0, w0, k8, K, bias, n0);
  y0[1] = finish(dot8::sum(a01), x0, w1, k8, K, bias, n0 + 1);
  y0[2] = finish(dot8::sum(a02), x0, w2, k8, K, bias, n0 + 2);
  y0[3] = finish(dot8::sum(a03), x0, w3, k8, K, bias, n0 + 3);
  y1[0] = finish(dot8::sum(a10), x1, w0, k8, K, bias, n0);
  y1[1] = finish(dot8::sum(a11), x1, w1, k8, K, bias, n0 + 1);
  y1[2] = finish(dot8::sum(a12), x1, w2, k8, K, bias, n0 + 2);
  y1[3] = finish(dot8::sum(a13), x1, w3, k8, K, bias, n0 + 3);
}

// One row of x against weight rows [n0, n0 + 4).
inline void tile1(const float* __restrict__ x, const float* __restrict__ w,
                  const float* __restrict__ bias, float* __restrict__ y, int64_t m0, int64_t n0,
                  int64_t N, int64_t K) {
  const float *w0 = w + n0 * K, *w1 = w0 + K, *w2 = w1 + K, *w3 = w2 + K;
  const float* x0 = x + m0 * K;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  const int64_t k8 = K - K % 8;
  for (int64_t k = 0; k < k8; k += 8) {
    const __m256 p = dot8::load(x0 + k);
    a0 = dot8::fma(p, dot8::load(w0 + k), a0);
    a1 = dot8::fma(p, dot8::load(w1 + k), a1);
    a2 = dot8::fma(p, dot8::load(w2 + k), a2);
    a3 = dot8::fma(p, dot8::load(w3 + k), a3);
  }
  float* y0 = y + m0 * N + n0;
  y0[0] = finish(dot8::sum(a0), x0, w0, k8, K, bias, n0);
  y0[1] = finish(dot8::sum(a1), x0, w1, k8, K, bias, n0 + 1);
  y0[2] = finish(dot8::sum(a2), x0, w2, k8, K, bias, n0 + 2);
  y0[3] = finish(dot8::sum(a3), x0, w3, k8, K, bias, n0 + 3);
}

// Weight rows [n_begin, n_end) against every row of x.
void rows_block(const float* x, const float* w, const float* bias, float* y, int64_t M,
                int64_t N, int64_t K, int64_t n_begin, int64_t n_end) {
  int64_t n = n_begin;
  for (; n + 4 <= n_end; n += 4) {
    int64_t m = 0;
    for (; m + 2 <= M; m += 2) tile2(x, w, bias, y, m, n, N, K);
    if (m < M) tile1(x, w, bias, y, m, n, N, K);
  }
  for (; n < n_end; ++n) {  // the last < 4 weight rows
    for (int64_t m = 0; m < M; ++m) {
      float s = 0.0f;
      for (int64_t k = 0; k < K; ++k) s += x[m * K + k] * w[n * K + k];
      y[m * N + n] = s + (bias != nullptr ? bias[n] : 0.0f);
    }
  }
}
#endif

at::Tensor small_linear_cpu(const at::Tensor& x, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias) {
  check_small_linear_args(x, weight, bias);
#if defined(DSPARK_AVX2_DOT)
  const int64_t K = weight.size(1), N = weight.size(0);
  const int64_t M = K > 0 ? x.numel() / K : 0;
  if (x.scalar_type() == at::kFloat && M >= 1 && M <= kSmallLinearMaxRows && K >= 8) {
    const at::Tensor xc = x.reshape({M, K}).contiguous();
    const at::Tensor wc = weight.contiguous();
    const at::Tensor bc = bias.has_value() ? bias->contiguous() : at::Tensor();
    std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
    shape.back() = N;
    at::Tensor y = at::empty({M, N}, x.options());
    const float* xp = xc.const_data_ptr<float>();
    const float* wp = wc.const_data_ptr<float>();
    const float* bp = bc.defined() ? bc.const_data_ptr<float>() : nullptr;
    float* yp = y.data_ptr<float>();
    // Tasks of whole 4-row weight blocks, >= 64 outputs each (below that a thread wake-up
    // costs more than the work).
    const int64_t blocks = (N + 3) / 4;
    at::parallel_for(0, blocks, 16, [&](int64_t begin, int64_t end) {
      rows_block(xp, wp, bp, yp, M, N, K, begin * 4, std::min(N, end * 4));
    });
    return y.view(shape);
  }
#endif
  return at::linear(x, weight, bias);
}

}  // namespace
}  // namespace cpu

TORCH_LIBRARY_IMPL(dspark, CPU, m) { m.impl("small_linear", &cpu::small_linear_cpu); }

}  // namespace dspark
