"""Smoke test of bench/bench_linear.py --smoke: it runs and writes the documented fields. It
does not judge performance."""
import json
import math
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                "bench"))

import bench_linear  # noqa: E402


def test_smoke_run(tmp_path):
    bench_linear.main(["--smoke", "--out", str(tmp_path)])
    with open(tmp_path / "linear_results.json") as f:
        res = json.load(f)
    assert len(res["cases"]) == 2
    for c in res["cases"]:
        for key in ("small_linear_s", "f_linear_s", "speedup"):
            assert math.isfinite(c[key]) and c[key] > 0, (key, c)
        assert c["max_abs_diff"] < 1e-3
