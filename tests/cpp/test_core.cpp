// Unit tests of the header-only core (csrc/core): Philox known answers, the deterministic
// exp/log, the per-element verification math, and the shared per-request algorithm driven by
// a plain scalar executor. Built by CMakeLists.txt (target dspark_core_tests) and run under
// AddressSanitizer + UndefinedBehaviorSanitizer by tests/test_cpp_core.py.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "core/fastmath.h"
#include "core/philox.h"
#include "core/verify_math.h"
#include "core/verify_row.h"
#include "cpu/philox_simd.h"
#include "cuda/markov_plan.h"
#include "check.h"

int g_failures = 0;

void run_lane_tests();  // test_lanes.cpp

namespace {

using namespace dspark;

void test_philox_known_answers() {
  // Random123 kat_vectors for philox4x32_10.
  const auto a = philox4x32_10(0, 0, 0, 0, 0, 0);
  CHECK(a.v[0] == 0x6627e8d5u && a.v[1] == 0xe169c58du && a.v[2] == 0xbc57ac4cu &&
        a.v[3] == 0x9b00dbd8u);
  const uint32_t f = 0xffffffffu;
  const auto b = philox4x32_10(f, f, f, f, f, f);
  CHECK(b.v[0] == 0x408f276du && b.v[1] == 0x41c83b0eu && b.v[2] == 0xa20bc7c6u &&
        b.v[3] == 0x6d5451fdu);
  const auto c = philox4x32_10(0x243f6a88u, 0x85a308d3u, 0x13198a2eu, 0x03707344u,
                               0xa4093822u, 0x299f31d0u);
  CHECK(c.v[0] == 0xd16cfe09u && c.v[1] == 0x94fdccebu && c.v[2] == 0x5001e420u &&
        c.v[3] == 0x24126ea1u);
}

void test_stream_layout() {
  const auto s = RngStream::make(-5, (int64_t{1} << 40) + 3, 7, RngPurpose::kResidual);
  CHECK(s.k0 == static_cast<uint32_t>(-5) && s.k1 == 0xffffffffu);
  CHECK(s.off_lo == 3u && s.off_hi == 256u);
  CHECK(s.tag == ((3u << 24) | 7u));
  const auto acc = RngStream::make(-5, (int64_t{1} << 40) + 3, 7, RngPurpose::kAccept);
  CHECK(acc.words(0).v[0] != s.words(0).v[0]);  // purposes are disjoint streams
  CHECK(uniform_from_word(0u) == 5.9604644775390625e-08f);
  CHECK(uniform_from_word(0xffffffffu) == 1.0f - 5.9604644775390625e-08f);
  CHECK(uniform_from_word(0xffffffffu) < 1.0f);
}

// The SIMD Philox of the CPU kernels (AVX-512 / AVX2 when the build enables them) gives the
// words of the scalar definition, blocks and tail alike.
void test_simd_philox_matches_scalar() {
  const auto s = RngStream::make(0x1234567890abcdefLL, 99, 5, RngPurpose::kDraftSample);
  for (int64_t groups : {0, 1, 7, 16, 31, 32, 37, 64, 101}) {
    std::vector<uint32_t> w0(groups), w1(groups), w2(groups), w3(groups);
    cpu::philox_fill(s, 1000u, groups, w0.data(), w1.data(), w2.data(), w3.data());
    for (int64_t g = 0; g < groups; ++g) {
      const auto o = s.words(1000u + static_cast<uint32_t>(g));
      CHECK(w0[g] == o.v[0] && w1[g] == o.v[1] && w2[g] == o.v[2] && w3[g] == o.v[3]);
    }
  }
}

void test_exp_log_accuracy() {
  std::mt19937 gen(1);
  double worst_exp = 0.0, worst_log = 0.0;
  for (int i = 0; i < 200000; ++i) {
    const float x = std::uniform_real_distribution<float>(-87.0f, 88.0f)(gen);
    const double r = std::exp(static_cast<double>(x));
    worst_exp = std::max(worst_exp, std::fabs(exp_f(x) - r) / r);
    const float y = std::exp(std::uniform_real_distribution<float>(-85.0f, 85.0f)(gen));
    const double l = std::log(static_cast<double>(y));
    worst_log = std::max(worst_log, std::fabs(log_f(y) - l) / std::max(std::fabs(l), 1.0));
  }
  CHECK(worst_exp < 3e-7);
  CHECK(worst_log < 3e-7);
  CHECK(exp_f(kNegInf) == 0.0f && exp_f(0.0f) == 1.0f && std::isinf(exp_f(100.0f)));
  CHECK(std::isnan(exp_f(std::nanf(""))));
  CHECK(log_f(1.0f) == 0.0f && log_f(0.0f) == kNegInf && std::isnan(log_f(-1.0f)));
  CHECK(std::isinf(log_f(__builtin_huge_valf())));
}

void test_verify_math() {
  CHECK(masked_scaled(std::nanf(""), 1.0f) == kNegInf);
  CHECK(masked_scaled(__builtin_huge_valf(), 1.0f) == kNegInf);
  CHECK(masked_scaled(3.0e38f, 10.0f) == kNegInf);  // overflow after scaling
  CHECK(masked_scaled(2.0f, 0.5f) == 1.0f);
  const SoftmaxStats merged = stats_merge({kNegInf, 0.0f}, {1.0f, 2.0f});
  CHECK(merged.max == 1.0f && merged.sum == 2.0f);
  CHECK(stats_lse({kNegInf, 0.0f}) == kNegInf);
  CHECK(!accept_token(0.5f, kNegInf, 0.0f) && !accept_token(0.5f, 0.0f, kNegInf));
  CHECK(accept_token(0.999f, 0.0f, -1.0f));  // p/q = e > 1: always accepted
  CHECK(block_stop_prob(0.0f, 1.0f) == 1.0f);
  CHECK(block_stop_prob(0.0f, 0.5f) == 0.0f);
  CHECK(block_log_weight(0.0f, -1.0f, -3.0f) == 0.0f);
  CHECK(residual_weight(0.5f, 0.2f, 0.3f) == 0.0f);
  // Draft probabilities: used as given; NaN, +-inf, negative, zero and subnormal are q = 0.
  CHECK(draft_prob(0.25f) == 0.25f && draft_prob(1.5f) == 1.5f);
  CHECK(draft_prob(std::nanf("")) == 0.0f && draft_prob(-0.5f) == 0.0f);
  CHECK(draft_prob(__builtin_huge_valf()) == 0.0f && draft_prob(kNegInf) == 0.0f);
  CHECK(draft_prob(1e-40f) == 0.0f && draft_prob(kMinNormal) == kMinNormal);
  CHECK(draft_log_prob_of(0.5f) == -1.0f && draft_log_prob_of(-1.0f) == kNegInf);
  CHECK(draft_log_prob_of(std::nanf("")) == kNegInf && draft_log_prob_of(0.0f) == kNegInf);
  ArgMax m = ArgMax::empty();
  m.offer(kNegInf, 0);
  CHECK(m.index == -1);
  m.offer(1.0f, 5);
  m.offer(1.0f, 3);
  m.offer(1.0f, 4);
  CHECK(m.index == 3);
}

// Scalar executor over [K+1, V] target logits and [K, V] draft rows: logits, or the
// probabilities themselves when `probs`.
struct ScalarExec {
  const std::vector<std::vector<float>>& t;
  const std::vector<std::vector<float>>& d;
  std::vector<int64_t> drafts;
  std::vector<int64_t> out;
  std::vector<int8_t> flags;
  bool probs = false;
  int64_t accepted = -7, emitted = -7;

  int64_t vocab() const { return static_cast<int64_t>(t[0].size()); }
  int64_t draft_token(int64_t k) const { return drafts[k]; }
  float target_logit(int64_t k, int64_t v) const { return t[k][v]; }
  float draft_value(int64_t k, int64_t v) const { return d[k][v]; }
  bool has_draft_row() const { return true; }
  bool draft_is_probs() const { return probs; }
  static float lse(const std::vector<float>& row, float inv_t) {
    SoftmaxStats s{kNegInf, 0.0f};
    for (float x : row) s = stats2_merge(s, {masked_scaled(x, inv_t), 1.0f});
    return stats2_lse(s);
  }
  LsePair row_lses(int64_t k, float inv_t) {
    return {lse(t[k], inv_t), probs ? 0.0f : lse(d[k], inv_t)};
  }
  float q_of(int64_t k, int64_t v, float inv_t, float ld) const {
    return probs ? draft_prob(d[k][v]) : prob(masked_scaled(d[k][v], inv_t), ld);
  }
  float residual_mass(int64_t k, float inv_t, float w, float lt, float ld, int64_t) {
    float z = 0.0f;
    for (int64_t v = 0; v < vocab(); ++v)
      z += residual_weight(w, prob(masked_scaled(t[k][v], inv_t), lt), q_of(k, v, inv_t, ld));
    return z;
  }
  int64_t sample_residual(int64_t k, float inv_t, float w, float lt, float ld, int64_t,
                          RngStream rng) {
    ArgMax r = ArgMax::empty(), f = ArgMax::empty();
    for (int64_t v = 0; v < vocab(); ++v) {
      const float p = prob(masked_scaled(t[k][v], inv_t), lt);
      const float q = q_of(k, v, inv_t, ld);
      const float ie = inv_neg_log2_uniform(rng.words(static_cast<uint32_t>(v / 4)).v[v % 4]);
      r.offer(race_key(residual_weight(w, p, q), ie), v);
      f.offer(race_key(p, ie), v);
    }
    return r.index >= 0 ? r.index : f.index;
  }
  int64_t sample_target(int64_t k, float inv_t, RngStream rng) {
    ArgMax a = ArgMax::empty();
    for (int64_t v = 0; v < vocab(); ++v)
      a.offer(gumbel2_key(masked_scaled(t[k][v], inv_t),
                         neg_log2_uniform(rng.words(static_cast<uint32_t>(v / 4)).v[v % 4])),
              v);
    return a.index;
  }
  int64_t argmax_target(int64_t k) {
    ArgMax a = ArgMax::empty();
    for (int64_t v = 0; v < vocab(); ++v) a.offer(masked_scaled(t[k][v], 1.0f), v);
    return a.index;
  }
  void emit(int64_t j, int64_t token) { out.at(j) = token; }
  void flag(int64_t k, int8_t f) { flags.at(k) = f; }
  void finish(int64_t a, int64_t e) {
    accepted = a;
    emitted = e;
  }
};

// design §3.3 toy law: target (1/3, 2/3), draft (2/3, 1/3), gamma = 2 -> 10/9 vs 11/9.
// Draft rows as logits and as probabilities (the same law).
void test_toy_law_through_shared_algorithm() {
  const std::vector<float> tl = {std::log(1.0f / 3), std::log(2.0f / 3)};
  const std::vector<float> dl = {std::log(2.0f / 3), std::log(1.0f / 3)};
  const std::vector<float> dp = {2.0f / 3, 1.0f / 3};
  const std::vector<std::vector<float>> t = {tl, tl, tl};
  const std::vector<std::vector<float>> d = {dl, dl};
  const std::vector<std::vector<float>> q = {dp, dp};
  for (const bool probs : {false, true}) {
    std::mt19937_64 gen(7);
    std::bernoulli_distribution pick_one(1.0 / 3);
    const int n = 60000;
    double sums[2] = {0.0, 0.0};
    for (int block = 0; block < 2; ++block) {
      for (int i = 0; i < n; ++i) {
        ScalarExec ex{t, probs ? q : d, {pick_one(gen) ? 1 : 0, pick_one(gen) ? 1 : 0},
                      std::vector<int64_t>(3, -1), std::vector<int8_t>(2, -1), probs};
        RowParams rp{2, 1.0f, 1000 + i, 3};
        verify_row(ex, rp, block == 1);
        CHECK(ex.emitted == ex.accepted + 1 && ex.accepted >= 0 && ex.accepted <= 2);
        CHECK(ex.out[ex.accepted] == 0 || ex.out[ex.accepted] == 1);
        sums[block] += static_cast<double>(ex.accepted);
      }
    }
    // Accepted count has standard deviation < 1: 5 sigma of the mean is < 0.021.
    CHECK(std::fabs(sums[0] / n - 10.0 / 9) < 0.021);
    CHECK(std::fabs(sums[1] / n - 11.0 / 9) < 0.021);
  }
}

void test_invalid_rows_emit_nothing() {
  const std::vector<std::vector<float>> t = {{0.0f, 1.0f}, {0.0f, 1.0f}};
  const std::vector<std::vector<float>> d = {{1.0f, 0.0f}};
  ScalarExec ex{t, d, {1}, std::vector<int64_t>(2, -1), std::vector<int8_t>(1, -1)};
  verify_row(ex, RowParams{1, -1.0f, 0, 0}, false);
  CHECK(ex.accepted == 0 && ex.emitted == 0 && ex.out[0] == -1);
  ScalarExec ex2{t, d, {5}, std::vector<int64_t>(2, -1), std::vector<int8_t>(1, -1)};
  verify_row(ex2, RowParams{1, 1.0f, 0, 0}, true);  // draft id outside the vocabulary
  CHECK(ex2.accepted == 0 && ex2.emitted == 1 && (ex2.out[0] == 0 || ex2.out[0] == 1));
}

}  // namespace

// The dense Markov kernel's shared-memory plan (cuda/markov_plan.h): r = 512 stages u on an
// H100/H200 (227 KiB per block) but not on an A100 (163 KiB), where it reads u from global
// memory; r = 256 stages everywhere; a rank too large for even the W2 tile is refused.
void test_markov_tile_plan() {
  using dspark::cuda::markov::choose_tile_plan;
  using dspark::cuda::markov::TilePlan;
  using dspark::cuda::markov::tile_smem_bytes;
  const size_t sm80 = 163 * 1024, sm90 = 227 * 1024;
  CHECK(tile_smem_bytes(512, true) == 512u * (68 + 34) * 4);
  CHECK(tile_smem_bytes(512, false) == 512u * 68 * 4);
  CHECK(choose_tile_plan(512, sm90) == TilePlan::kStageU);
  CHECK(choose_tile_plan(512, sm80) == TilePlan::kGlobalU);
  CHECK(choose_tile_plan(256, sm80) == TilePlan::kStageU);
  CHECK(choose_tile_plan(512, 100 * 1024) == TilePlan::kTooLarge);
  CHECK(choose_tile_plan(1, 48 * 1024) == TilePlan::kStageU);
}

int main() {
  test_markov_tile_plan();
  test_philox_known_answers();
  test_stream_layout();
  test_simd_philox_matches_scalar();
  test_exp_log_accuracy();
  test_verify_math();
  test_toy_law_through_shared_algorithm();
  test_invalid_rows_emit_nothing();
  run_lane_tests();
  if (g_failures != 0) {
    std::fprintf(stderr, "%d check(s) failed\n", g_failures);
    return EXIT_FAILURE;
  }
  std::printf("dspark core tests: all checks passed\n");
  return EXIT_SUCCESS;
}
