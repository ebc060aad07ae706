// Loading logits as float32: 16-byte vector loads where a row allows them, scalar loads
// elsewhere, and the exact conversions the CPU kernel uses (bf16 = bits << 16, fp16 by the
// IEEE conversion), so both executors see the same float for every element.
#pragma once

#include <cstdint>

#include <cuda_fp16.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include "../core/fastmath.h"

namespace dspark {
namespace cuda {

// A "unit" is the group of consecutive vocabulary lanes one thread handles per step: one
// 16-byte load, i.e. 4 floats or 8 half-precision values. It is also a whole number of
// Philox groups (4 lanes each), so a unit costs one or two Philox calls and no word is wasted.
template <typename scalar_t>
struct Unit {
  static constexpr int kLanes = 16 / static_cast<int>(sizeof(scalar_t));
  static constexpr int kPhiloxGroups = kLanes / 4;
  static_assert(kLanes % 4 == 0, "a unit must hold whole Philox groups");
};

__device__ __forceinline__ float bf16_bits_to_float(uint32_t bits16) {
  return __uint_as_float(bits16 << 16);
}
__device__ __forceinline__ float half_bits_to_float(uint32_t bits16) {
  return __half2float(__ushort_as_half(static_cast<unsigned short>(bits16)));
}

// One element through the read-only path (all inputs are immutable for the kernel's life).
__device__ __forceinline__ float load_scalar(const float* p) { return __ldg(p); }
__device__ __forceinline__ float load_scalar(const c10::BFloat16* p) {
  return bf16_bits_to_float(__ldg(reinterpret_cast<const unsigned short*>(p)));
}
__device__ __forceinline__ float load_scalar(const c10::Half* p) {
  return half_bits_to_float(__ldg(reinterpret_cast<const unsigned short*>(p)));
}

// Row starts come from strides (views, ragged offsets, odd V), so alignment is a per-row
// runtime property, never assumed.
template <typename T>
__device__ __forceinline__ bool aligned16(const T* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// Unpack one 16-byte word into the unit's floats.
__device__ __forceinline__ void unpack(const uint4 w, const float*, float (&x)[4]) {
  x[0] = __uint_as_float(w.x);
  x[1] = __uint_as_float(w.y);
  x[2] = __uint_as_float(w.z);
  x[3] = __uint_as_float(w.w);
}
__device__ __forceinline__ void unpack(const uint4 w, const c10::BFloat16*, float (&x)[8]) {
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {  // little endian: the lower half is the lower lane
    x[2 * i] = bf16_bits_to_float(words[i] & 0xFFFFu);
    x[2 * i + 1] = bf16_bits_to_float(words[i] >> 16);
  }
}
__device__ __forceinline__ void unpack(const uint4 w, const c10::Half*, float (&x)[8]) {
  const uint32_t words[4] = {w.x, w.y, w.z, w.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    x[2 * i] = half_bits_to_float(words[i] & 0xFFFFu);
    x[2 * i + 1] = half_bits_to_float(words[i] >> 16);
  }
}

// Lanes [v0, v0 + kLanes) of `row` (v0 a multiple of kLanes). Lanes at or past `vocab` are
// never read and come back as -inf, which every pass treats as masked (probability 0, never an
// arg-max), so the tail needs no special case downstream.
template <typename scalar_t>
__device__ __forceinline__ void load_unit(const scalar_t* row, bool row_aligned, int64_t v0,
                                          int64_t vocab,
                                          float (&x)[Unit<scalar_t>::kLanes]) {
  constexpr int kLanes = Unit<scalar_t>::kLanes;
  if (row_aligned && v0 + kLanes <= vocab) {
    const uint4 w = __ldg(reinterpret_cast<const uint4*>(row + v0));
    unpack(w, row, x);
  } else {
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      const int64_t v = v0 + i;
      x[i] = (v < vocab) ? load_scalar(row + v) : kNegInf;
    }
  }
}

}  // namespace cuda
}  // namespace dspark
