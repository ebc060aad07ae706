// Unit tests of the base-2 math of verification and of its SIMD execution:
// - exp2_f / log2_f accuracy against double, and their special values;
// - on AVX-512 or AVX2 builds (the CMake targets dspark_core_tests, -march=native, and
//   dspark_core_tests_avx2): every lane-generic function instantiated with the backend's
//   vector type gives, lane by lane, the bits of its float instantiation, and the SIMD row
//   passes (cpu/row_passes_simd.h) give the portable passes' tokens and (up to rounding) their
//   sums, for every logit dtype, ragged vocabulary sizes, masked logits and hard rows.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "check.h"
#include "core/fastmath.h"
#include "core/philox.h"
#include "core/verify_math.h"
#include "cpu/row_passes.h"
#include "cpu/row_passes_simd.h"

namespace {

using namespace dspark;

constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t bits_of(float x) {
  uint32_t u;
  std::memcpy(&u, &x, sizeof(u));
  return u;
}

// Same value, NaNs of any payload counted equal.
bool same_bits(float a, float b) {
  return (std::isnan(a) && std::isnan(b)) || bits_of(a) == bits_of(b);
}

void test_exp2_log2_accuracy() {
  std::mt19937 gen(7);
  double worst_exp2 = 0.0, worst_log2 = 0.0;
  for (int i = 0; i < 400000; ++i) {
    const float x = std::uniform_real_distribution<float>(-125.0f, 126.5f)(gen);
    const double r = std::exp2(static_cast<double>(x));
    worst_exp2 = std::max(worst_exp2, std::fabs(exp2_f(x) - r) / r);
    const float y = std::exp2(std::uniform_real_distribution<float>(-125.0f, 127.0f)(gen));
    const double l = std::log2(static_cast<double>(y));
    worst_log2 = std::max(worst_log2, std::fabs(log2_f(y) - l) / std::max(std::fabs(l), 1.0));
  }
  CHECK(worst_exp2 < 2.5e-7);  // about 2 ulp
  CHECK(worst_log2 < 2.5e-7);
  CHECK(exp2_f(0.0f) == 1.0f && exp2_f(-1.0f) == 0.5f && exp2_f(10.0f) == 1024.0f);
  CHECK(exp2_f(-kInf) == 0.0f && exp2_f(-150.0f) == 0.0f && exp2_f(-1000.0f) == 0.0f);
  CHECK(exp2_f(-140.0f) == 0x1p-140f && exp2_f(-149.0f) == 0x1p-149f);  // subnormal results
  CHECK(exp2_f(-126.5f) > 0.0f && exp2_f(-126.5f) < 0x1p-126f);
  CHECK(exp2_f(127.0f) == 0x1p127f && exp2_f(1000.0f) == 0x1p127f && exp2_f(kInf) == 0x1p127f);
  CHECK(std::isnan(exp2_f(std::nanf(""))));
  CHECK(log2_f(1.0f) == 0.0f && log2_f(8.0f) == 3.0f && log2_f(0.25f) == -2.0f);
  CHECK(log2_f(0.0f) == -kInf && std::isnan(log2_f(-1.0f)) && std::isinf(log2_f(kInf)));
  // Exponential-race variables: E' = -log2 u is in (0, 24] for every word.
  CHECK(neg_log2_uniform(0u) > 23.99f && neg_log2_uniform(0u) <= 24.0f);
  CHECK(neg_log2_uniform(0xffffffffu) > 0.0f);
}

#if defined(DSPARK_SIMD512) || defined(DSPARK_SIMD256)
#if defined(DSPARK_SIMD512)
using Lanes = cpu::Avx512;
#else
using Lanes = cpu::Avx2;
#endif
using VecF = Lanes::F;  // the backend's float vector (16 or 8 lanes)
using VecU = Lanes::U;
constexpr int kW = Lanes::kLanes;
using SimdPasses = cpu::simd::Passes<Lanes>;

// Inputs that stress each branch: specials, clamp edges, the flush-to-zero edge, random.
std::vector<float> exp2_inputs(std::mt19937& gen) {
  std::vector<float> v = {0.0f, -0.0f, -0.5f, 0.5f, -1.5f, -125.5f, -126.0f, -126.0001f, -126.5f,
                          -127.0f, -149.0f, -149.5f, -149.7f, -150.0f, -150.5f, -160.0f, -1e30f,
                          -kInf, kInf, 127.0f, 127.49f, 127.5f,
                          128.0f, 129.0f, 1e30f, std::nanf(""), 1e-40f, -1e-40f};
  std::uniform_real_distribution<float> wide(-160.0f, 130.0f), near0(-2.0f, 0.1f);
  for (int i = 0; i < 200000; ++i) v.push_back(i % 2 ? wide(gen) : near0(gen));
  while (v.size() % kW) v.push_back(0.25f);
  return v;
}

template <class Scalar, class Lanes>
void expect_lanes_equal(const std::vector<float>& in, Scalar scalar, Lanes lanes, int* bad) {
  for (size_t i = 0; i < in.size(); i += kW) {
    alignas(64) float out[kW];
    lanes(VecF::load(in.data() + i)).store(out);
    for (int j = 0; j < kW; ++j) {
      if (!same_bits(out[j], scalar(in[i + j]))) ++*bad;
    }
  }
}

void test_simd_lanes_are_bit_identical() {
  std::mt19937 gen(11);
  const std::vector<float> xs = exp2_inputs(gen);
  int bad = 0;
  expect_lanes_equal(xs, [](float x) { return exp2_f(x); },
                     [](VecF x) { return exp2_lanes(x); }, &bad);
  CHECK(bad == 0);
  std::vector<float> le127;  // the unclamped form, on its domain x <= 127 (and NaN)
  for (float x : xs) {
    if (!(x > 127.0f)) le127.push_back(x);
  }
  while (le127.size() % kW) le127.push_back(-3.0f);
  bad = 0;
  expect_lanes_equal(le127, [](float x) { return exp2_f(x); },
                     [](VecF x) { return exp2_le127_lanes(x); }, &bad);
  CHECK(bad == 0);

  std::vector<float> pos;
  std::uniform_real_distribution<float> expo(-125.9f, 127.9f);
  for (int i = 0; i < 200000; ++i) pos.push_back(std::exp2(expo(gen)));
  for (float x : {1.0f, 0.70710677f, 0.70710683f, 1.4142135f, 1.17549435e-38f, 3.0e38f}) {
    pos.push_back(x);
  }
  while (pos.size() % kW) pos.push_back(2.0f);
  bad = 0;
  expect_lanes_equal(pos, [](float x) { return log2_pos_f(x); },
                     [](VecF x) { return log2_pos_lanes(x); }, &bad);
  CHECK(bad == 0);

  // Philox word -> E' and 1/E', over random words and the extremes.
  std::vector<uint32_t> words = {0u, 1u, 511u, 512u, 0x7fffffffu, 0x80000000u, 0xffffffffu};
  std::uniform_int_distribution<uint32_t> any;
  for (int i = 0; i < 200000; ++i) words.push_back(any(gen));
  while (words.size() % kW) words.push_back(12345u);
  bad = 0;
  for (size_t i = 0; i < words.size(); i += kW) {
    alignas(64) float e[kW], ie[kW];
    const VecU w = VecU::load(words.data() + i);
    neg_log2_uniform(w).store(e);
    inv_neg_log2_uniform(w).store(ie);
    for (int j = 0; j < kW; ++j) {
      if (!same_bits(e[j], neg_log2_uniform(words[i + j]))) ++bad;
      if (!same_bits(ie[j], inv_neg_log2_uniform(words[i + j]))) ++bad;
    }
  }
  CHECK(bad == 0);

  // Scaling/masking, probabilities, residual weights, race and Gumbel keys.
  std::vector<float> logits = {kInf, -kInf, std::nanf(""), 3.0e38f, -3.0e38f, 0.0f, -0.0f};
  std::normal_distribution<float> normal(0.0f, 4.0f);
  for (int i = 0; i < 100000; ++i) logits.push_back(normal(gen));
  while (logits.size() % kW) logits.push_back(1.0f);
  bad = 0;
  for (float scale : {verify_scale(1.0f), verify_scale(1.0f / 0.7f), 1e38f}) {
    for (float lse : {2.5f, -kInf, 40.0f}) {
      for (size_t i = 0; i + kW <= logits.size(); i += kW) {
        alignas(64) float s[kW], p[kW], rw[kW], key[kW], g[kW];
        const VecF vs = masked_scaled(VecF::load(logits.data() + i), VecF(scale));
        const VecF vp = prob(vs, VecF(lse));
        const VecF vq = prob(vs - VecF(0.5f), VecF(lse));
        vs.store(s);
        vp.store(p);
        residual_weight(VecF(0.75f), vp, vq).store(rw);
        race_key(vp, VecF(1.7f)).store(key);
        gumbel2_key(vs, VecF(0.3f)).store(g);
        alignas(64) float dq[kW];
        draft_prob(VecF::load(logits.data() + i) * VecF(scale)).store(dq);
        for (int j = 0; j < kW; ++j) {
          const float ss = masked_scaled(logits[i + j], scale);
          const float sp = prob(ss, lse);
          const float sq = prob(ss - 0.5f, lse);
          if (!same_bits(dq[j], draft_prob(logits[i + j] * scale))) ++bad;
          if (!same_bits(s[j], ss) || !same_bits(p[j], sp)) ++bad;
          if (!same_bits(rw[j], residual_weight(0.75f, sp, sq))) ++bad;
          if (!same_bits(key[j], race_key(sp, 1.7f))) ++bad;
          if (!same_bits(g[j], gumbel2_key(ss, 0.3f))) ++bad;
        }
      }
    }
  }
  CHECK(bad == 0);
}

// kind 0: N(0, 3^2) logits; 1: a flat row (every key decided by its random number alone);
// 2: a peaked row whose peak is the last lane (the pruning bar stays low until the end);
// 3: a rising row (the log-sum-exp's running reference must move up chunk after chunk).
template <typename scalar_t>
std::vector<scalar_t> random_row(std::mt19937& gen, int64_t vocab, bool masked, int kind = 0) {
  std::normal_distribution<float> normal(0.0f, 3.0f);
  std::vector<scalar_t> row(static_cast<size_t>(vocab));
  for (auto& x : row) x = static_cast<scalar_t>(kind == 1 ? 0.5f : normal(gen));
  if (kind == 2) row.back() = static_cast<scalar_t>(40.0f);
  if (kind == 3) {  // every 1000 lanes 60 higher: each chunk far above the earlier ones
    for (size_t v = 0; v < row.size(); ++v) {
      row[v] = static_cast<scalar_t>(static_cast<float>(row[v]) + 60.0f * static_cast<float>(v / 1000));
    }
  }
  if (masked && vocab > 3) {
    row[1] = static_cast<scalar_t>(kInf);
    row[static_cast<size_t>(vocab / 2)] = static_cast<scalar_t>(std::nanf(""));
    row[static_cast<size_t>(vocab - 1)] = static_cast<scalar_t>(-kInf);
  }
  return row;
}

// A row of draft probabilities summing to about 1, with a NaN, a negative, a +inf and a
// subnormal entry where the row is long enough (all count as q = 0).
template <typename scalar_t>
std::vector<scalar_t> random_probs(std::mt19937& gen, int64_t vocab) {
  std::exponential_distribution<float> expo(1.0f);
  std::vector<float> w(static_cast<size_t>(vocab));
  float total = 0.0f;
  for (auto& x : w) total += (x = expo(gen) * expo(gen));
  std::vector<scalar_t> row(w.size());
  for (size_t v = 0; v < w.size(); ++v) row[v] = static_cast<scalar_t>(w[v] / total);
  if (vocab > 7) {
    row[2] = static_cast<scalar_t>(std::nanf(""));
    row[3] = static_cast<scalar_t>(-0.25f);
    row[5] = static_cast<scalar_t>(__builtin_huge_valf());
    row[6] = static_cast<scalar_t>(1e-39f);
  }
  return row;
}

template <typename scalar_t>
void simd_passes_match_generic() {
  std::mt19937 gen(3);
  int bad_tokens = 0, bad_sums = 0;
  for (int64_t vocab : {1, 7, 15, 16, 17, 63, 64, 65, 1000, 1024, 1025, 2100, 5003}) {
    for (int variant = 0; variant < 8; ++variant) {
      const bool masked = variant % 2 == 1;
      const int kind = variant / 2;
      const auto t = random_row<scalar_t>(gen, vocab, masked, kind);
      const auto d = random_row<scalar_t>(gen, vocab, false);
      // Draft probabilities (unnormalised, some entries NaN / negative / +inf: q = 0).
      const auto dp = random_probs<scalar_t>(gen, vocab);
      // Temperatures 0.9, 1e-3 (scaled logits in the thousands) and 50 (nearly flat laws).
      const float temps[4] = {0.9f, 50.0f, 1e-3f, 1.0f};
      const float scale = verify_scale(1.0f / temps[kind]);
      const float lt = cpu::generic::row_lse(t.data(), vocab, scale);
      const float ld = cpu::generic::row_lse(d.data(), vocab, scale);
      const float lt2 = SimdPasses::row_lse(t.data(), vocab, scale);
      // Sums differ only in the order of additions (sequential under -O0, 16/32-lane
      // accumulators otherwise): a few 1e-5 over thousands of terms.
      if (!(std::fabs(lt - lt2) <= 2e-4f * std::max(1.0f, std::fabs(lt)))) {
        std::fprintf(stderr, "lse V=%ld variant=%d: %.9g vs %.9g\n", static_cast<long>(vocab),
                     variant, lt, lt2);
        ++bad_sums;
      }
      for (uint32_t seed = 0; seed < 6; ++seed) {
        const RngStream rng = RngStream::make(seed * 7919 + 1, 42, 3, RngPurpose::kResidual);
        if (cpu::generic::row_sample(t.data(), vocab, scale, rng) !=
            SimdPasses::row_sample(t.data(), vocab, scale, rng)) {
          ++bad_tokens;
        }
        for (float w : {1.0f, 0.3f}) {
          const int64_t onehot = static_cast<int64_t>(seed) % vocab;
          for (int form = 0; form < 3; ++form) {  // draft logits, probabilities, one-hot
            const scalar_t* dr = form == 0 ? d.data() : form == 1 ? dp.data() : nullptr;
            const bool probs = form == 1;
            const float ldx = form == 0 ? ld : 0.0f;
            const int64_t oh = dr != nullptr ? -1 : onehot;
            if (cpu::generic::row_sample_residual(t.data(), dr, probs, vocab, scale, w, lt, ldx, oh,
                                                  rng) !=
                SimdPasses::row_sample_residual(t.data(), dr, probs, vocab, scale, w, lt, ldx, oh,
                                                rng)) {
              ++bad_tokens;
            }
            const float z1 =
                cpu::generic::row_residual_mass(t.data(), dr, probs, vocab, scale, w, lt, ldx, oh);
            const float z2 =
                SimdPasses::row_residual_mass(t.data(), dr, probs, vocab, scale, w, lt, ldx, oh);
            if (!(std::fabs(z1 - z2) <= 2e-4f * std::max(1.0f, z1))) {
              std::fprintf(stderr, "mass V=%ld variant=%d: %.9g vs %.9g\n",
                           static_cast<long>(vocab), variant, z1, z2);
              ++bad_sums;
            }
          }
        }
      }
      // The residual of a draft equal to the target has no mass: both fall back to p.
      const RngStream rng = RngStream::make(9, 1, 0, RngPurpose::kResidual);
      if (cpu::generic::row_sample_residual(t.data(), t.data(), false, vocab, scale, 1.0f, lt, lt, -1,
                                            rng) !=
          SimdPasses::row_sample_residual(t.data(), t.data(), false, vocab, scale, 1.0f, lt, lt, -1,
                                          rng)) {
        ++bad_tokens;
      }
    }
  }
  CHECK(bad_tokens == 0);
  CHECK(bad_sums == 0);
}
#endif  // DSPARK_SIMD512 || DSPARK_SIMD256

}  // namespace

void run_lane_tests() {
  test_exp2_log2_accuracy();
#if defined(DSPARK_SIMD512) || defined(DSPARK_SIMD256)
  test_simd_lanes_are_bit_identical();
  simd_passes_match_generic<float>();
  simd_passes_match_generic<double>();
  simd_passes_match_generic<c10::BFloat16>();
  simd_passes_match_generic<c10::Half>();
  std::printf("dspark core tests: %s lanes checked against the scalar definitions\n",
              Lanes::kName);
#else
  std::printf("dspark core tests: built without AVX2 or AVX-512, SIMD lane checks skipped\n");
#endif
}
