"""Smoke test of bench/bench_decode.py: every configuration runs on tiny models, the JSON has
the documented fields and the perfect drafter accepts every draft. Not a performance test."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import bench_decode  # noqa: E402
import pytest  # noqa: E402


@pytest.mark.slow
def test_bench_decode_smoke(tmp_path):
    bench_decode.main(["--smoke", "--out", str(tmp_path)])
    with open(tmp_path / "decode_results.json") as f:
        data = json.load(f)
    names = {(r["name"], r["batch"]) for r in data["results"]}
    for n in ("hf_greedy", "hf_assisted_lm", "hf_assisted_perfect", "hf_prompt_lookup",
              "ours_lm", "ours_ngram", "ours_perfect"):
        assert (n, 1) in names, n
    for r in data["results"]:
        assert r["tokens_per_s"] > 0 and 0 <= r["forward_s"] <= r["wall_s"]
        assert math.isfinite(r["speedup_vs_hf_greedy"])
        if r["name"].startswith("ours"):
            assert r["rounds"] >= 1 and set(r["phases_s"]) >= {"draft", "target_forward",
                                                                "verify_op", "bookkeeping"}
        if r["name"] == "ours_perfect":
            assert abs(r["tau"] - (bench_decode.GAMMA + 1)) < 1e-9 or r["rounds"] > 1
    assert (tmp_path / "decode_overhead.png").exists()
