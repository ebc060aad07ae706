"""bench/bench_train.py runs (tiny shapes) and reports throughput, the time split and the
cache size it saves."""
import json
import os
import sys

import train_cases as tc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_train_smoke(tmp_path):
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import bench_train
    finally:
        sys.path.pop(0)
    with tc.one_thread():
        res = bench_train.main(["--smoke", "--out", str(tmp_path)])
    saved = json.load(open(tmp_path / "bench_train_smoke.json"))
    assert saved["tokens_per_s"] == res["tokens_per_s"] > 0
    assert abs(sum(res["share"].values()) - 1) < 1e-6
    assert res["cache_bytes_this_run"] == res["run_tokens"] * res["cache_bytes_per_token"]
    assert res["cache_bytes_per_token_qwen3_4b"] == 6 * 2560 * 2
