// Launch plan of the dense Markov step kernel (markov_step.cuh), in plain C++ so the CPU unit
// tests can check it. Each CTA keeps its W2 tile ([r][kTileStride] floats) in shared memory
// and, when it fits, also the u vectors of a chunk of rows ([r][kChunkStride]). At r = 512 both
// need 204 KiB, more than an sm_80 block may opt into (163 KiB); the W2 tile alone needs
// 136 KiB. So the plan stages u when the device allows it and otherwise reads u from global
// memory (L1/L2-cached: every thread of a row group reads the same words).
#pragma once

#include <cstddef>
#include <cstdint>

namespace dspark {
namespace cuda {
namespace markov {

constexpr int kThreads = 256;
constexpr int kTileV = 64;          // vocabulary lanes per CTA (16 groups of 4)
constexpr int kGroups = kTileV / 4;
constexpr int kRowChunk = 2 * (kThreads / kGroups);  // 32 rows: 2 per thread
constexpr int kTileStride = kTileV + 4;              // float4-aligned, fewer bank conflicts
constexpr int kChunkStride = kRowChunk + 2;          // float2-aligned

enum class TilePlan { kStageU, kGlobalU, kTooLarge };

inline size_t tile_smem_bytes(int64_t rank, bool stage_u) {
  return static_cast<size_t>(rank) * (kTileStride + (stage_u ? kChunkStride : 0)) *
         sizeof(float);
}

// The plan for Markov rank `rank` on a device whose blocks may use `smem_limit` bytes of
// dynamic shared memory (cudaDevAttrMaxSharedMemoryPerBlockOptin).
inline TilePlan choose_tile_plan(int64_t rank, size_t smem_limit) {
  if (tile_smem_bytes(rank, true) <= smem_limit) return TilePlan::kStageU;
  if (tile_smem_bytes(rank, false) <= smem_limit) return TilePlan::kGlobalU;
  return TilePlan::kTooLarge;
}

}  // namespace markov
}  // namespace cuda
}  // namespace dspark
