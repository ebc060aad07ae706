"""Smoke test of the benchmark machinery in bench/ (a few seconds).

Checks that ``bench_verify.py --smoke`` runs every op, writes results.json with the fields
the README documents and a plot, that greedy agrees exactly with the eager baseline, and that
the eager baselines reproduce the design §3.3 toy expectations. It does not judge performance.
"""
import json
import math
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import bench_verify  # noqa: E402
import eager_baselines  # noqa: E402


def test_smoke_run(tmp_path):
    results = bench_verify.main(["--smoke", "--out", str(tmp_path)])
    with open(tmp_path / "results.json") as f:
        on_disk = json.load(f)
    assert on_disk["mode"] == "smoke"
    assert "dspark_ext" in on_disk["machine"] and "torch" in on_disk["machine"]
    assert on_disk["copy_bandwidth"]["large"]["GBps"] > 0
    cases = on_disk["cases"]
    assert {c["op"] for c in cases} == {"greedy", "token", "block"}
    assert len(cases) == 3 * len(bench_verify.grid("smoke"))
    for c in cases:
        for key in ("native_s", "eager_s", "x_eager", "GBps", "copy_same_GBps",
                    "frac_copy_same", "frac_copy_large"):
            assert math.isfinite(c[key]) and c[key] > 0, (key, c)
        assert 0 <= c["accepted_mean"] <= c["K"]
        b = c["bytes"]
        assert b["total"] == b["read"] + b["written"] > 0
        assert b["target_rows"] <= c["B"] * (c["K"] + 1) and b["draft_rows"] <= c["B"] * c["K"]
        if c["op"] == "greedy":
            assert c["matches_eager"]
            assert b["draft_rows"] == 0
        if c["op"] == "block":
            assert b["target_rows"] == c["B"] * (c["K"] + 1)
            assert "block_over_token" in c
    assert any(os.path.exists(tmp_path / f"verify_bandwidth.{e}") for e in ("png", "svg"))
    assert results["targets"]  # the CPU targets are listed (as not measured in smoke)


def test_bytes_moved_counts_rows():
    acc = torch.tensor([0, 2, 4])  # K = 4: rejected at 0, at 2, all accepted
    tok = bench_verify.bytes_moved("token", acc, B=3, K=4, V=10, itemsize=4)
    assert tok["target_rows"] == 1 + 3 + 5 and tok["draft_rows"] == 1 + 3 + 4
    gr = bench_verify.bytes_moved("greedy", acc, B=3, K=4, V=10, itemsize=4)
    assert gr["target_rows"] == 1 + 3 + 5 and gr["draft_rows"] == 0
    blk = bench_verify.bytes_moved("block", acc, B=3, K=4, V=10, itemsize=2)
    assert blk["target_rows"] == 15 and blk["draft_rows"] == 12


def test_eager_baselines_toy():
    torch.manual_seed(0)
    tok, blk = eager_baselines.toy_check(trials=200_000)
    # binomial-ish spread of a mean of 200k draws in {0, 1, 2}: sd ~ 0.0016
    assert tok == pytest.approx(10 / 9, abs=0.01)
    assert blk == pytest.approx(11 / 9, abs=0.01)
