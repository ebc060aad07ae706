"""Engine level: vllm.LLM on tiny Qwen3 checkpoints built here, n-gram speculative decoding,
with the dspark plugin and without it (each configuration one engine, in its own process:
tests/vllm/engine_driver.py).

* Greedy: with and without the plugin, speculative output equals non-speculative greedy.
* T = 1 (and top-k, top-p) with seeded requests, on a model whose next-token law is the same
  softmax at every position: the tokens the rejection sampler emitted (every token after the
  first, which vLLM's plain sampler draws at prefill) follow that law (chi-square, SPEC §9);
  vLLM's own sampler on this build fails the same test (negative control); seeded requests are
  reproducible in another batch.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tiny_model
from stats import ALPHA, chi_square_pvalue

HERE = os.path.dirname(os.path.abspath(__file__))
GREEDY = {"temperature": 0.0, "max_tokens": 40, "ignore_eos": True}
# name -> (number of requests, SamplingParams arguments)
SAMPLED = {
    "plain": (192, {"temperature": 1.0}),
    "top_k": (128, {"temperature": 1.0, "top_k": 3}),
    "top_p": (128, {"temperature": 0.7, "top_p": 0.8}),
}
MAX_TOKENS = 24
N_REPRO = 48


def prompts(n, seed, length=8):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(tiny_model.WORDS, size=length)) for _ in range(n)]


def sampled_requests(name, first_seed):
    n, params = SAMPLED[name]
    return [[p, dict(params, seed=first_seed + i, max_tokens=MAX_TOKENS, ignore_eos=True)]
            for i, p in enumerate(prompts(n, first_seed))]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    paths = {kind: str(root / kind) for kind in ("random", "iid")}
    tiny_model.build(paths["random"], "random")
    logits = tiny_model.build(paths["iid"], "iid")
    return paths, logits


def run_engine(tmp_path_factory, model, speculative, plugin, jobs):
    work = tmp_path_factory.mktemp("engine")
    spec_path, out_path = work / "spec.json", work / "out.json"
    spec_path.write_text(json.dumps(dict(model=model, speculative=speculative, plugin=plugin,
                                         jobs=jobs)))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "engine_driver.py"),
                           str(spec_path), str(out_path)], capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        pytest.fail(f"engine failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(out_path.read_text())
    print(f"engine speculative={speculative} plugin={plugin}: {result['seconds']}, "
          f"sampler {result['sampler']}")
    return result


def greedy_jobs():
    return {"greedy": [[p, GREEDY] for p in prompts(16, 1)]}


@pytest.fixture(scope="module")
def greedy_reference(models, tmp_path_factory):
    return run_engine(tmp_path_factory, models[0]["random"], False, True, greedy_jobs())


@pytest.fixture(scope="module", params=[True, False], ids=["plugin", "no_plugin"])
def greedy_speculative(request, models, tmp_path_factory):
    return request.param, run_engine(tmp_path_factory, models[0]["random"], True,
                                     request.param, greedy_jobs())


def sampled_jobs(names):
    jobs = {name: sampled_requests(name, 1000 * (i + 1)) for i, name in enumerate(names)}
    if "plain" in names:
        # The first requests of "plain" again, in reverse order, in a batch of their own.
        jobs["repro"] = sampled_requests("plain", 1000)[:N_REPRO][::-1]
    return jobs


@pytest.fixture(scope="module")
def sampled_plugin(models, tmp_path_factory):
    return run_engine(tmp_path_factory, models[0]["iid"], True, True, sampled_jobs(SAMPLED))


@pytest.fixture(scope="module")
def sampled_no_plugin(models, tmp_path_factory):
    return run_engine(tmp_path_factory, models[0]["iid"], True, False, sampled_jobs(["plain"]))


def law(logits, temperature=1.0, top_k=None, top_p=1.0):
    """Exact law of vLLM's sampling from one logits row (as in test_sampler.target_law)."""
    z = np.asarray(logits, dtype=np.float64) / temperature
    keep = np.ones(z.size, dtype=bool) if top_k is None else z >= np.sort(z)[::-1][top_k - 1]
    probs = np.where(keep, np.exp(z - z.max()), 0.0)
    probs /= probs.sum()
    if top_p < 1.0:
        order = np.argsort(probs, kind="stable")
        cum = np.cumsum(probs[order])
        assert np.min(np.abs(cum - (1 - top_p))) > 1e-3
        drop = cum <= 1 - top_p
        drop[-1] = False
        probs[order[drop]] = 0.0
        probs /= probs.sum()
    return probs


def speculative_pvalue(tokens, probs):
    """Chi-square p-value of every token after the first (those the rejection sampler
    emitted: accepted drafts, corrections, bonus tokens) against the law."""
    later = np.concatenate([np.asarray(t[1:]) for t in tokens])
    assert len(later) == len(tokens) * (MAX_TOKENS - 1)
    return chi_square_pvalue(np.bincount(later, minlength=probs.size), probs)


def test_greedy_speculative_equals_non_speculative(greedy_reference, greedy_speculative):
    plugin, result = greedy_speculative
    assert greedy_reference["sampler"]["class"] == "NoneType"
    if plugin:
        assert result["sampler"]["class"] == "DsparkRejectionSampler"
        stats = result["sampler"]["stats"]
        assert stats.get("dspark", 0) > 0 and set(stats) == {"dspark"}, stats
    else:
        assert result["sampler"]["class"] == "RejectionSampler"
    assert result["jobs"]["greedy"] == greedy_reference["jobs"]["greedy"]


@pytest.mark.parametrize("name", sorted(SAMPLED))
def test_sampled_tokens_follow_the_target_law(models, sampled_plugin, name):
    n, params = SAMPLED[name]
    probs = law(models[1], params["temperature"], params.get("top_k"), params.get("top_p", 1.0))
    tokens = sampled_plugin["jobs"][name]
    stats = sampled_plugin["sampler"]["stats"]
    assert sampled_plugin["sampler"]["class"] == "DsparkRejectionSampler"
    assert stats.get("dspark", 0) > 0 and set(stats) == {"dspark"}, stats
    assert len(tokens) == n
    first = np.array([t[0] for t in tokens])
    assert chi_square_pvalue(np.bincount(first, minlength=probs.size), probs) > ALPHA
    assert speculative_pvalue(tokens, probs) > ALPHA


def test_seeded_requests_reproducible(sampled_plugin):
    jobs = sampled_plugin["jobs"]
    assert jobs["repro"][::-1] == jobs["plain"][:N_REPRO]
    assert len({tuple(t) for t in jobs["plain"]}) == len(jobs["plain"])  # seeds differ


def test_vllm_own_sampler_fails_the_same_test(models, sampled_no_plugin):
    """Negative control: vLLM 0.32's rejection sampler on CPU (uninitialised temperatures)."""
    assert sampled_no_plugin["sampler"]["class"] == "RejectionSampler"
    tokens = sampled_no_plugin["jobs"]["plain"]
    later = np.concatenate([np.asarray(t[1:], dtype=np.int64) for t in tokens])
    probs = law(models[1])
    pvalue = chi_square_pvalue(np.bincount(later, minlength=probs.size), probs)
    assert pvalue < ALPHA, pvalue
