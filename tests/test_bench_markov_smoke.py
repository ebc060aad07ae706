"""Smoke test of bench/bench_markov.py --smoke (seconds): the machinery runs and writes the
documented fields and a plot. It does not judge performance."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import bench_markov  # noqa: E402


def test_smoke_run(tmp_path):
    bench_markov.main(["--smoke", "--out", str(tmp_path), "--device", "cpu"])
    with open(tmp_path / "markov_results.json") as f:
        res = json.load(f)
    assert res["mode"] == "smoke" and len(res["cases"]) == 4
    # the bundled shape at one row (small-batch executor) and eight (batched executor)
    assert sorted((c["B"], c["r"]) for c in res["cases"] if c["dtype"] == "bf16") == [
        (1, 128), (8, 128)]
    for c in res["cases"]:
        keys = ["native_s", "gemm_s", "eager_s", "x_eager", "GBps", "frac_copy_same"]
        keys += ["ref_s", "x_ref"] if c["K"] == 4 else []
        for key in keys:
            assert math.isfinite(c[key]) and c[key] > 0, (key, c)
        b = c["bytes"]
        assert b["total"] == b["read"] + b["written"] > 0
    assert len(res["k_scaling"]) == 1 and res["k_scaling"][0]["ratio"] > 0
    assert any(os.path.exists(tmp_path / f"markov_bandwidth.{e}") for e in ("png", "svg"))
