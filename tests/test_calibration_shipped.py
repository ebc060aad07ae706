"""The shipped calibration files belong to the drafter they sit next to: same block size,
one entry per decoding temperature the demo uses, finite parameters of the right shape."""
import inspect
import json
import os

import pytest

from dspark_ext import bundled
from dspark_ext.bundled.demo import run_demo


def _demo_temperatures():
    return inspect.signature(run_demo).parameters["temperatures"].default


def _drafter_block_size():
    with open(os.path.join(bundled.model_path("dspark"), "config.json")) as f:
        return json.load(f)["block_size"]


def test_sts_file_matches_drafter():
    with open(os.path.join(bundled.model_path("dspark"), "sts.json")) as f:
        fits = json.load(f)["temperatures"]
    for t in _demo_temperatures():
        temps = bundled.sts_temperatures("dspark", t)
        assert any(abs(float(k) - t) < 1e-9 for k in fits), t
        assert len(temps) == _drafter_block_size()
        assert all(v > 0 for v in temps)


def test_calibration_file_matches_drafter():
    path = os.path.join(bundled.model_path("dspark"), "calibration.json")
    if not os.path.isfile(path):
        pytest.fail(f"{path} missing: run `python -m dspark_ext.bundled.build calibrate`")
    with open(path) as f:
        cal = json.load(f)
    k = _drafter_block_size()
    assert cal["block_size"] == k
    assert set(cal["fit_modules"]).isdisjoint(cal["score_modules"])
    for t in _demo_temperatures():
        entry = cal["temperatures"][f"{t:g}"]
        assert entry["method"] in ("sts", "platt")
        shape = (k,) if entry["method"] == "sts" else (k, 2)
        params = entry["params"]
        assert len(params) == shape[0]
        if entry["method"] == "platt":
            assert all(len(row) == 2 for row in params)
        assert all(abs(v) < 1e6 for row in params for v in (row if isinstance(row, list) else
                                                            [row]))
