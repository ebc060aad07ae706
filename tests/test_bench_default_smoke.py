"""Smoke test of bench/bench_default.py on the bundled default models (or the folder in
DSPARK_DEFAULT_MODELS): every part runs, the JSON holds finite numbers for each, and greedy
DSpark speculative decoding reproduces autoregressive greedy decoding token for token (the
bench compares the outputs; batch 1 and batch 8). Not a performance test."""
import json
import math
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

from dspark_ext import bundled  # noqa: E402

PARTS = ("1_acceptance", "2_curves", "3_calibration", "4_wallclock", "5_serving")


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


def _curve_ok(curve, k):
    assert len(curve) == k
    assert _finite(curve[0]) and 0 <= curve[0] <= 1  # position 1 is always verified
    assert all(c is None or (_finite(c) and 0 <= c <= 1) for c in curve)


def test_bench_default_smoke(tmp_path):
    try:
        for name in bundled.MODELS:
            bundled.model_path(name)
    except FileNotFoundError as e:
        pytest.skip(f"bundled models absent: {e}")
    import bench_default

    out = tmp_path / "out"
    bench_default.main(["--smoke", "--out", str(out),
                        "--ablation", f"same={bundled.model_path('dspark')}"])
    with open(out / "default_results.json") as f:
        data = json.load(f)
    assert set(PARTS) <= set(data)
    assert all(_finite(v) for v in _numbers(data))
    meta = data["meta"]
    assert meta["torch"] and meta["threads"] >= 1 and meta["machine"]["cpu_count"] >= 1
    assert all(meta["params"][m] > 0 for m in ("target", "dspark", "dflash", "ar_draft"))

    k = bench_default.GAMMA
    p1 = data["1_acceptance"]["runs"]
    assert set(p1) == {"T=0", "T=1"}
    for run in p1.values():
        assert set(run["drafters"]) == set(bench_default.DRAFTERS)
        for r in run["drafters"].values():
            assert _finite(r["accepted_length"]) and 1 <= r["accepted_length"] <= k + 1
            assert _finite(r["acceptance_rate"]) and 0 <= r["acceptance_rate"] <= 1
            _curve_ok(r["conditional_acceptance"], k)
        assert _finite(run["dspark_gain_over_dflash"])
        assert isinstance(run["gain_goal_met"], bool)

    p2 = data["2_curves"]
    assert len(p2["drafters"]) == 2 * len(bench_default.DRAFTERS)
    assert set(p2["ablations"]) == {"reference", "same"}
    for abl in p2["ablations"].values():
        assert abl["gamma"] == abl["block_size"] and abl["params"] > 0
        for r in abl["runs"].values():
            assert _finite(r["accepted_length"])
            _curve_ok(r["conditional_acceptance"], abl["gamma"])
    # the same checkpoint twice on the same prompts and seeds: the same rounds
    for t, r in p2["ablations"]["same"]["runs"].items():
        ref = p2["ablations"]["reference"]["runs"][t]
        for key in ("accepted_length", "conditional_acceptance", "rounds"):
            assert r[key] == ref[key], (t, key)

    for run in data["3_calibration"]["runs"].values():
        assert len(run["positions"]) == k and len(run["temperatures"]) == k
        for pos in run["positions"]:
            assert pos["n"] > 0 and _finite(pos["ece_before"]) and _finite(pos["ece_after"])
            assert isinstance(pos["goal_met"], bool)
        assert os.path.exists(run["reliability_plot"])

    p4 = data["4_wallclock"]
    assert set(p4["runs"]) == {"T=0 B=1", "T=0 B=8", "T=1 B=1", "T=1 B=8"}
    for key, run in p4["runs"].items():
        names = set(run["methods"])
        assert {"autoregressive", "hf_generate", "ours_dspark", "ours_dspark_scheduled",
                "ours_ar_draft", "ours_ngram"} <= names
        if run["batch"] == 1:
            assert {"hf_assisted_ar_draft", "hf_prompt_lookup"} <= names
        for m in run["methods"].values():
            assert m["tokens_per_s"] > 0 and _finite(m["speedup_vs_ar"])
            assert m["new_tokens"] > 0
        if run["temperature"] == 0:
            ms = run["methods"]
            # the real check: lossless greedy speculative decoding
            for name in ("ours_dspark", "ours_dspark_scheduled"):
                assert ms[name]["greedy_identical_to_ar"] is True, (key, name)
            assert ms["ours_dspark"]["tokens_per_row"] == ms["autoregressive"]["tokens_per_row"]
    assert p4["greedy_dspark_identical_to_ar"] is True

    p5 = data["5_serving"]
    assert all(s > 0 for s in p5["sps"]["steps_per_second"])
    assert os.path.exists(p5["sps_file"])
    for run in p5["runs"].values():
        assert run["recorded_rounds"] > 0 and os.path.exists(run["rounds_file"])
        assert os.path.exists(run["serving_sim_json"])
        for row in run["by_R"]:
            assert all(_finite(v) and v > 0 for v in row["expected_throughput"].values())
            assert _finite(row["causal_vs_best_fixed"])
