"""Engine runs for the engine-level tests: tiny checkpoints, request sets, and one
vllm.LLM configuration per process (engine_driver.py)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tiny_model
from stats import chi_square_pvalue

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


def build_models(tmp_path_factory):
    """({"random": dir, "iid": dir}, logits of the iid model's constant next-token law)."""
    root = tmp_path_factory.mktemp("models")
    paths = {kind: str(root / kind) for kind in ("random", "iid")}
    tiny_model.build(paths["random"], "random")
    logits = tiny_model.build(paths["iid"], "iid")
    return paths, logits


def prompts(n, seed, length=8):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(tiny_model.WORDS, size=length)) for _ in range(n)]


def sampled_requests(name, first_seed):
    n, params = SAMPLED[name]
    return [[p, dict(params, seed=first_seed + i, max_tokens=MAX_TOKENS, ignore_eos=True)]
            for i, p in enumerate(prompts(n, first_seed))]


def greedy_jobs():
    return {"greedy": [[p, GREEDY] for p in prompts(16, 1)]}


def sampled_jobs(names):
    jobs = {name: sampled_requests(name, 1000 * (i + 1)) for i, name in enumerate(names)}
    if "plain" in names:
        # The first requests of "plain" again, in reverse order, in a batch of their own.
        jobs["repro"] = sampled_requests("plain", 1000)[:N_REPRO][::-1]
    return jobs


def run_engine(tmp_path_factory, model, speculative, plugin, jobs, env=None, **extra):
    """One engine_driver.py process; returns its JSON result (fails the test on error)."""
    work = tmp_path_factory.mktemp("engine")
    spec_path, out_path = work / "spec.json", work / "out.json"
    spec_path.write_text(json.dumps(dict(model=model, speculative=speculative, plugin=plugin,
                                         jobs=jobs, **extra)))
    proc = subprocess.run([sys.executable, os.path.join(HERE, "engine_driver.py"),
                           str(spec_path), str(out_path)], capture_output=True, text=True,
                          timeout=900, env=dict(os.environ, **(env or {})))
    if proc.returncode != 0:
        pytest.fail(f"engine failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(out_path.read_text())
    print(f"engine speculative={speculative} plugin={plugin} env={env}: {result['seconds']}, "
          f"sampler {result['sampler']}")
    return result


def later_tokens_pvalue(tokens, probs, expect_len=MAX_TOKENS):
    """Chi-square p-value of every token after the first (those the rejection sampler
    emitted: accepted drafts, corrections, bonus tokens) against the law; with ``expect_len``
    every request must have produced that many tokens."""
    later = np.concatenate([np.asarray(t[1:], dtype=np.int64) for t in tokens])
    if expect_len is not None:
        assert len(later) == len(tokens) * (expect_len - 1)
    return chi_square_pvalue(np.bincount(later, minlength=probs.size), probs)


def first_tokens_pvalue(tokens, probs):
    first = np.array([t[0] for t in tokens])
    return chi_square_pvalue(np.bincount(first, minlength=probs.size), probs)


def assert_dspark_verified(result):
    """The engine's rejection sampler was the plugin's and verified every batch."""
    assert result["sampler"]["class"] == "DsparkRejectionSampler", result["sampler"]
    stats = result["sampler"]["stats"]
    assert stats.get("dspark", 0) > 0 and set(stats) == {"dspark"}, stats
