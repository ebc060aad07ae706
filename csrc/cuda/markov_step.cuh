// CUDA kernels of one Markov drafting step (core/markov_math.h), two phases:
//
// 1. markov_tile_kernel: each CTA owns kTileV vocabulary lanes. It loads its tile of W2
//    ([kTileV, r], converted to float32) into shared memory ONCE, then walks the batch in chunks
//    of kRowChunk rows: u (the heads' r-vectors, [B, r] float32) of the chunk goes to shared
//    memory, every thread computes a 4-lane x 2-row block of bias = W2 u (sequential float32
//    FMAs over r), adds the base logits, writes z rounded to the logits dtype, and forms the
//    softmax statistics and the perturbed arg-max of its lanes (one Philox call per 4 lanes);
//    16 threads per row reduce them and write one partial per (row, tile).
// 2. markov_finish_kernel: one CTA per row folds its partials (exact arg-max, stats_merge),
//    writes draft_lse and the token. The next step's head math reads the token on the stream.
//
// Bytes per step (the minimum): W2 once (V r sizeof(w)), base logits and z once each
// (2 B V sizeof(logit)), u (B r 4) once per CTA from L2, partials B (V / kTileV) 24.
#pragma once

#include <cstdint>

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../core/markov_math.h"
#include "../markov_args.h"
#include "block_reduce.cuh"
#include "markov_plan.h"
#include "vec_load.cuh"

namespace dspark {
namespace cuda {
namespace markov {

// kThreads, kTileV, kRowChunk and the strides: markov_plan.h.
constexpr int kFinishThreads = 256;

struct TilePartial {
  float max, sum, key;
  int64_t index;
};

// The per-row inputs and outputs of every Markov step kernel (dense and top-k).
struct RowIO {
  const float* temperature;
  const int64_t* seed;
  const int64_t* offset;
  const int64_t* anchor;
  int64_t* tokens;  // [B, K]
  float* lse;       // [B, K]
  const float* u;   // [B, r], this step's
  int64_t batch, steps, vocab, rank, k;
  bool teacher;

  void set_rows(MarkovArgs& a) {  // host
    temperature = a.temperature.const_data_ptr<float>();
    seed = a.seed.const_data_ptr<int64_t>();
    offset = a.offset.const_data_ptr<int64_t>();
    anchor = a.anchor.const_data_ptr<int64_t>();
    tokens = a.tokens.data_ptr<int64_t>();
    lse = a.lse.data_ptr<float>();
    u = nullptr;
    batch = a.batch;
    steps = a.steps;
    vocab = a.vocab;
    rank = a.rank;
    k = 0;
    teacher = a.teacher.has_value();
  }
};

template <typename scalar_t, typename w_t>
struct StepParams : RowIO {
  const scalar_t* base;  // row b, position k at base + b * base_sb + k * base_sk
  int64_t base_sb, base_sk;
  const w_t* w2;    // [V, r]
  scalar_t* z;      // [B, K, V]
  TilePartial* parts;  // [B, tiles]
  int64_t tiles;
};

__device__ __forceinline__ float w_to_float(const float* p) { return __ldg(p); }
__device__ __forceinline__ float w_to_float(const c10::BFloat16* p) { return load_scalar(p); }

// z rounded to the logits dtype: stored, and returned as float (as cpu/markov_pass.h).
__device__ __forceinline__ float store_z(float* out, float z) {
  *out = z;
  return z;
}
__device__ __forceinline__ float store_z(c10::BFloat16* out, float z) {
  const uint32_t bits = bf16_round_bits(z);
  *reinterpret_cast<unsigned short*>(out) = static_cast<unsigned short>(bits);
  return __uint_as_float(bits << 16);
}
__device__ __forceinline__ float store_z(c10::Half* out, float z) {
  const __half h = __float2half_rn(z);
  *reinterpret_cast<__half*>(out) = h;
  return __half2float(h);
}

// kStageU: the chunk's u vectors in shared memory (markov_plan.h); else read from global.
template <typename scalar_t, typename w_t, bool kStageU>
__global__ void __launch_bounds__(kThreads)
    markov_tile_kernel(const StepParams<scalar_t, w_t> p) {
  extern __shared__ float4 smem4[];
  float* w2s = reinterpret_cast<float*>(smem4);  // [r][kTileStride]
  float* us = w2s + p.rank * kTileStride;         // [r][kChunkStride] (kStageU only)
  const int tid = static_cast<int>(threadIdx.x);
  const int64_t tile = blockIdx.x;
  const int64_t v0 = tile * kTileV;
  const int64_t r = p.rank;

  for (int64_t idx = tid; idx < kTileV * r; idx += kThreads) {  // coalesced along r
    const int64_t vv = idx / r, i = idx - vv * r;
    const int64_t v = v0 + vv;
    w2s[i * kTileStride + vv] = (v < p.vocab) ? w_to_float(p.w2 + v * r + i) : 0.0f;
  }
  const int g = tid % kGroups;  // lanes v0 + 4g .. v0 + 4g + 3
  const int rg = tid / kGroups;  // rows 2 rg, 2 rg + 1 of the chunk
  const int64_t lane0 = v0 + 4 * g;

  for (int64_t rc = 0; rc < p.batch; rc += kRowChunk) {
    __syncthreads();  // previous chunk's readers are done with us (and w2s is complete)
    if constexpr (kStageU) {
      for (int64_t idx = tid; idx < kRowChunk * r; idx += kThreads) {
        const int64_t rr = idx / r, i = idx - rr * r;
        const int64_t row = rc + rr;
        us[i * kChunkStride + rr] = (row < p.batch) ? p.u[row * r + i] : 0.0f;
      }
      __syncthreads();
    }
    // This thread's two rows of the chunk (u from global memory when not staged).
    const int64_t row0 = rc + 2 * rg;
    const float* u0 = p.u + (row0 < p.batch ? row0 : 0) * r;
    const float* u1 = p.u + (row0 + 1 < p.batch ? row0 + 1 : 0) * r;
    float acc[2][4] = {{0.0f, 0.0f, 0.0f, 0.0f}, {0.0f, 0.0f, 0.0f, 0.0f}};
    for (int64_t i = 0; i < r; ++i) {
      const float4 w = *reinterpret_cast<const float4*>(w2s + i * kTileStride + 4 * g);
      float2 uv;
      if constexpr (kStageU) {
        uv = *reinterpret_cast<const float2*>(us + i * kChunkStride + 2 * rg);
      } else {
        // Rows past the batch multiply row 0's u; their results are never written.
        uv = make_float2(__ldg(u0 + i), __ldg(u1 + i));
      }
      acc[0][0] = fma_f(w.x, uv.x, acc[0][0]);
      acc[0][1] = fma_f(w.y, uv.x, acc[0][1]);
      acc[0][2] = fma_f(w.z, uv.x, acc[0][2]);
      acc[0][3] = fma_f(w.w, uv.x, acc[0][3]);
      acc[1][0] = fma_f(w.x, uv.y, acc[1][0]);
      acc[1][1] = fma_f(w.y, uv.y, acc[1][1]);
      acc[1][2] = fma_f(w.z, uv.y, acc[1][2]);
      acc[1][3] = fma_f(w.w, uv.y, acc[1][3]);
    }
#pragma unroll
    for (int q = 0; q < 2; ++q) {
      const int64_t row = rc + 2 * rg + q;
      SoftmaxStats st{kNegInf, 0.0f};
      ArgMax am = ArgMax::empty();
      if (row < p.batch) {
        MarkovRowMode mode = markov_row_mode(p.temperature[row]);
        mode.sample = mode.sample && !p.teacher;
        Philox4x32Out words{{0u, 0u, 0u, 0u}};
        if (mode.sample) {
          words = markov_stream(p.seed[row], p.offset[row], p.k)
                      .words(static_cast<uint32_t>(lane0 / 4));
        }
        const scalar_t* brow = p.base + row * p.base_sb + p.k * p.base_sk;
        scalar_t* zrow = p.z + (row * p.steps + p.k) * p.vocab;
        float s[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t v = lane0 + j;
          s[j] = kNegInf;
          if (v < p.vocab) {
            const float zr = store_z(zrow + v, load_scalar(brow + v) + acc[q][j]);
            s[j] = masked_scaled(zr, mode.inv_t);
            am.offer(markov_key(s[j], mode.sample, neg_log_uniform(words.v[j])), v);
          }
          st.max = max_f(s[j], st.max);
        }
        if (st.max != kNegInf) {
#pragma unroll
          for (int j = 0; j < 4; ++j) st.sum += (s[j] == kNegInf) ? 0.0f : exp_f(s[j] - st.max);
        }
      }
      // 16 consecutive lanes share a row: xor masks below 16 stay within the half-warp.
#pragma unroll
      for (int mask = kGroups / 2; mask >= 1; mask >>= 1) {
        st = stats_merge(st, shfl_xor(st, mask));
        am.merge(shfl_xor(am, mask));
      }
      if (g == 0 && row < p.batch) {
        p.parts[row * p.tiles + tile] = TilePartial{st.max, st.sum, am.key, am.index};
      }
    }
  }
}

template <typename scalar_t, typename w_t>
__global__ void __launch_bounds__(kFinishThreads)
    markov_finish_kernel(const StepParams<scalar_t, w_t> p) {
  __shared__ ReduceScratch scratch;
  const int64_t b = blockIdx.x;
  SoftmaxStats st{kNegInf, 0.0f};
  ArgMax am = ArgMax::empty();
  for (int64_t t = threadIdx.x; t < p.tiles; t += kFinishThreads) {
    const TilePartial part = p.parts[b * p.tiles + t];
    st = stats_merge(st, SoftmaxStats{part.max, part.sum});
    if (part.index >= 0) am.offer(part.key, part.index);
  }
  st = block_stats<kFinishThreads>(st, scratch);
  am = block_argmax<kFinishThreads>(am, scratch);
  if (threadIdx.x == 0) {
    const int64_t a = p.anchor[b];
    const bool bad = a < 0 || a >= p.vocab || !markov_temperature_ok(p.temperature[b]);
    p.lse[b * p.steps + p.k] = stats_lse(st);
    if (!p.teacher) p.tokens[b * p.steps + p.k] = bad ? int64_t{-1} : am.index;
  }
}

}  // namespace markov
}  // namespace cuda
}  // namespace dspark
