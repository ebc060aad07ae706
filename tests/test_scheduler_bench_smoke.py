"""Smoke tests of bench/bench_schedule.py and bench/serving_sim.py (--smoke): the machinery
runs, native and reference agree, and the simulation's outputs have the documented shape. No
performance is judged here."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import bench_schedule  # noqa: E402
import serving_sim  # noqa: E402


def test_bench_schedule_smoke(tmp_path):
    res = bench_schedule.main(["--smoke", "--out", str(tmp_path)])
    with open(tmp_path / "schedule_results.json") as f:
        on_disk = json.load(f)
    assert on_disk["mode"] == "smoke"
    assert len(on_disk["cases"]) == len(bench_schedule.grid("smoke")) * len(bench_schedule.MODES)
    for c in on_disk["cases"]:
        assert c["matches_ref"], c
        assert math.isfinite(c["native_s"]) and c["native_s"] > 0
        assert c["x_ref"] > 0
    assert {t["mode"] for t in res["targets"]} == set(bench_schedule.MODES)


def test_serving_sim_smoke(tmp_path):
    res = serving_sim.main(["--smoke", "--out", str(tmp_path), "--steps", "4"])
    with open(tmp_path / "serving_sim.json") as f:
        on_disk = json.load(f)
    assert [r["R"] for r in on_disk["results"]] == [1, 8, 64, 256]
    for r in on_disk["results"]:
        pol = r["policies"]
        assert set(pol) == set(serving_sim.POLICIES)
        # No speculation emits exactly one token per request per step.
        assert pol["no_spec"]["tokens_per_step"] == 1.0
        for p in pol.values():
            assert p["throughput"] > 0 and p["per_request_speed"] > 0
        # On expected tokens the scheduler never falls below the best fixed length.
        assert r["causal_at_least_best_fixed"] and r["async_at_least_best_fixed"]
    assert os.path.exists(res["plot"])
