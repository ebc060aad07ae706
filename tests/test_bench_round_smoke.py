"""Smoke test of bench/bench_round.py --smoke: the round-cost benchmark runs end to end on the
bundled pair and writes the documented fields and a plot. It does not judge performance."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import bench_round  # noqa: E402


def test_smoke_run(tmp_path):
    bench_round.main(["--smoke", "--drafters", "dspark", "--temperatures", "0",
                      "--out", str(tmp_path)])
    with open(tmp_path / "round_results.json") as f:
        res = json.load(f)
    assert [c["batch"] for c in res["configs"]] == [1, 2]
    for c in res["configs"]:
        e = c["drafters"]["dspark"]
        assert e["greedy_identical_to_ar"] and e["scheduled"]["greedy_identical_to_ar"]
        assert e["scheduled_measured"]["greedy_identical_to_ar"]
        for key in ("tokens_per_s", "speedup", "tau", "ceiling", "drafter_vs_ar_step"):
            assert math.isfinite(e[key]) and e[key] > 0, (key, e)
        split = e["round"]
        assert abs(sum(split["fraction"].values()) - 1.0) < 1e-6
        assert split["ms_per_round"]["target_forward"] > 0 and split["rounds"] >= 1
        assert 0 <= e["scheduled"]["drafted_rounds"] <= e["scheduled"]["rounds"]
    assert "hf_prompt_lookup" in res["configs"][0]["peers"]
    if bench_round.harness.pyplot() is not None:  # the plot needs matplotlib (an extra)
        assert os.path.exists(tmp_path / "round_cost.png")
