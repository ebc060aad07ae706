// Loading logits as float32: 16-byte vector loads where a row allows them, scalar loads
// elsewhere, and the exact conversions the CPU kernel uses (bf16 = bits << 16, fp16 by the
// IEEE conversion), so both executors see the same float for every element.
#pragma once

#include <cstdint>

#include <cuda_fp16.h>

#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

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

// Element formats: the raw bits of one logit and their exact conversion to float32.
template <typename scalar_t>
struct Elem;
template <>
struct Elem<float> {
  using Bits = unsigned int;
  static constexpr uint32_t kNegInfBits = 0xFF800000u;
  __device__ static __forceinline__ float to_float(uint32_t bits) { return __uint_as_float(bits); }
};
template <>
struct Elem<c10::BFloat16> {
  using Bits = unsigned short;
  static constexpr uint32_t kNegInfBits = 0xFF80u;
  __device__ static __forceinline__ float to_float(uint32_t bits) {
    return __uint_as_float(bits << 16);
  }
};
template <>
struct Elem<c10::Half> {
  using Bits = unsigned short;
  static constexpr uint32_t kNegInfBits = 0xFC00u;
  __device__ static __forceinline__ float to_float(uint32_t bits) {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(bits)));
  }
};

// Bits of one element through the read-only path (inputs are immutable for the kernel's life).
template <typename scalar_t>
__device__ __forceinline__ uint32_t load_bits(const scalar_t* p) {
  return __ldg(reinterpret_cast<const typename Elem<scalar_t>::Bits*>(p));
}

// One element as float32.
template <typename scalar_t>
__device__ __forceinline__ float load_scalar(const scalar_t* p) {
  return Elem<scalar_t>::to_float(load_bits(p));
}

// Row starts come from strides (views, ragged offsets, odd V), so alignment is a per-row
// runtime property, never assumed.
template <typename T>
__device__ __forceinline__ bool aligned16(const T* p) {
  return (reinterpret_cast<uintptr_t>(p) & 15u) == 0;
}

// One unit's 16 bytes, kept packed as loaded: 8 half-precision lanes then take 4 registers
// instead of 8, which is what lets the passes keep several units in flight (and the Philox
// sampling passes run without spills) within 64 registers. Lanes are converted where used.
struct RawUnit {
  uint32_t w[4];
};

// Lane i (a compile-time constant after unrolling) of a unit as float32. Little endian: the
// lower half of a 32-bit word is the lower lane.
template <typename scalar_t>
__device__ __forceinline__ float lane(const RawUnit& r, int i) {
  if constexpr (sizeof(scalar_t) == 4) {
    return Elem<scalar_t>::to_float(r.w[i]);
  } else {
    return Elem<scalar_t>::to_float((r.w[i / 2] >> (16 * (i % 2))) & 0xFFFFu);
  }
}

// Lanes [v0, v0 + kLanes) of an aligned row, v0 + kLanes <= V: one 16-byte load.
template <typename scalar_t>
__device__ __forceinline__ RawUnit load_unit_vector(const scalar_t* row, int64_t v0) {
  const uint4 q = __ldg(reinterpret_cast<const uint4*>(row + v0));
  return RawUnit{{q.x, q.y, q.z, q.w}};
}

// Packs per-lane bits into a unit.
template <typename scalar_t>
__device__ __forceinline__ RawUnit pack_lanes(const uint32_t (&bits)[Unit<scalar_t>::kLanes]) {
  RawUnit r;
  if constexpr (sizeof(scalar_t) == 4) {
#pragma unroll
    for (int j = 0; j < 4; ++j) r.w[j] = bits[j];
  } else {
#pragma unroll
    for (int j = 0; j < 4; ++j) r.w[j] = bits[2 * j] | (bits[2 * j + 1] << 16);
  }
  return r;
}

// Lanes [v0, v0 + kLanes) of any row (v0 a multiple of kLanes). Lanes at or past `vocab` are
// never read and come back as -inf, which every pass treats as masked (probability 0, never
// an arg-max), so the tail needs no special case downstream. A full unit of a misaligned row
// issues its scalar loads unconditionally so they are all in flight together.
template <typename scalar_t>
__device__ __forceinline__ RawUnit load_unit(const scalar_t* row, bool row_aligned, int64_t v0,
                                             int64_t vocab) {
  constexpr int kLanes = Unit<scalar_t>::kLanes;
  uint32_t bits[kLanes];
  if (v0 + kLanes <= vocab) {
    if (row_aligned) return load_unit_vector(row, v0);
#pragma unroll
    for (int i = 0; i < kLanes; ++i) bits[i] = load_bits(row + v0 + i);
  } else {
#pragma unroll
    for (int i = 0; i < kLanes; ++i) {
      const int64_t v = v0 + i;
      bits[i] = (v < vocab) ? load_bits(row + v) : Elem<scalar_t>::kNegInfBits;
    }
  }
  return pack_lanes<scalar_t>(bits);
}

}  // namespace cuda
}  // namespace dspark
