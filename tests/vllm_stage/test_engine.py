"""Engine level: vllm.LLM on tiny Qwen3 checkpoints built here, n-gram speculative decoding,
with the dspark plugin and without it (each configuration one engine, in its own process:
tests/vllm_stage/engine_driver.py).

* Greedy: with and without the plugin, speculative output equals non-speculative greedy.
* T = 1 (and top-k, top-p) with seeded requests, on a model whose next-token law is the same
  softmax at every position: the first generated token (vLLM's plain sampler, at prefill) and
  every later one (the rejection sampler's: accepted drafts, corrections, bonus tokens) follow
  that law (chi-square, design §9); vLLM's own sampler on this build fails the same test
  (negative control); seeded requests are reproducible in another batch.
"""
import pytest

from engines import (N_REPRO, SAMPLED, assert_dspark_verified, build_models,
                     first_tokens_pvalue, greedy_jobs, later_tokens_pvalue, run_engine,
                     sampled_jobs)
from laws import target_law
from stats import ALPHA


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return build_models(tmp_path_factory)


@pytest.fixture(scope="module")
def greedy_reference(models, tmp_path_factory):
    return run_engine(tmp_path_factory, models[0]["random"], False, True, greedy_jobs())


@pytest.fixture(scope="module", params=[True, False], ids=["plugin", "no_plugin"])
def greedy_speculative(request, models, tmp_path_factory):
    return request.param, run_engine(tmp_path_factory, models[0]["random"], True,
                                     request.param, greedy_jobs())


@pytest.fixture(scope="module")
def sampled_plugin(models, tmp_path_factory):
    return run_engine(tmp_path_factory, models[0]["iid"], True, True, sampled_jobs(SAMPLED))


@pytest.fixture(scope="module")
def sampled_no_plugin(models, tmp_path_factory):
    return run_engine(tmp_path_factory, models[0]["iid"], True, False, sampled_jobs(["plain"]))


def test_greedy_speculative_equals_non_speculative(greedy_reference, greedy_speculative):
    plugin, result = greedy_speculative
    assert greedy_reference["sampler"]["class"] == "NoneType"
    if plugin:
        assert_dspark_verified(result)
    else:
        assert result["sampler"]["class"] == "RejectionSampler"
    assert result["jobs"]["greedy"] == greedy_reference["jobs"]["greedy"]


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_sampled_tokens_follow_the_target_law(models, sampled_plugin, name):
    n, params = SAMPLED[name]
    probs = target_law(models[1], params["temperature"], params.get("top_k"),
                       params.get("top_p", 1.0))
    tokens = sampled_plugin["jobs"][name]
    assert_dspark_verified(sampled_plugin)
    assert len(tokens) == n
    # Two p-values in one assertion: each above ALPHA / 2 (false failures below 1e-6).
    pvalues = [first_tokens_pvalue(tokens, probs), later_tokens_pvalue(tokens, probs)]
    assert min(pvalues) > ALPHA / 2, pvalues


def test_seeded_requests_reproducible(sampled_plugin):
    jobs = sampled_plugin["jobs"]
    assert jobs["repro"][::-1] == jobs["plain"][:N_REPRO]
    assert len({tuple(t) for t in jobs["plain"]}) == len(jobs["plain"])  # seeds differ


def test_vllm_own_sampler_fails_the_same_test(models, sampled_no_plugin):
    """Negative control: vLLM 0.32's rejection sampler on CPU (uninitialised temperatures)."""
    assert sampled_no_plugin["sampler"]["class"] == "RejectionSampler"
    pvalue = later_tokens_pvalue(sampled_no_plugin["jobs"]["plain"], target_law(models[1]),
                                 expect_len=None)
    assert pvalue < ALPHA, pvalue
