"""Smoke test of bench/bench_markov_topk.py --smoke: it runs and writes the documented fields.
It does not judge performance."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import bench_markov_topk  # noqa: E402


def test_smoke_run(tmp_path):
    bench_markov_topk.main(["--smoke", "--out", str(tmp_path), "--device", "cpu"])
    with open(tmp_path / "markov_topk_results.json") as f:
        res = json.load(f)
    assert len(res["cases"]) == 1 and res["peer_source"]
    for key in ("dense_s", "topk_s", "peer_s", "x_dense", "x_peer"):
        assert math.isfinite(res["cases"][0][key]) and res["cases"][0][key] > 0, key


def test_peer_step_draws_from_the_candidates():
    """The peer loop is a real top-k drafter: every token is one of its position's
    candidates."""
    import torch
    x = bench_markov_topk.make_inputs(3, 4, 300, torch.float32, torch.device("cpu"), 16)
    tokens = bench_markov_topk.peer_step(x, 5, bench_markov_topk.eager_gathered_bias)
    cand = x["base"].topk(5, dim=-1).indices
    assert bool((cand == tokens[..., None]).any(-1).all())
