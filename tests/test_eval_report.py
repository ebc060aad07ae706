"""Evaluation output: every file written and well formed, the recorded rounds replayable by
bench/serving_sim.py, and the command-line entry points end to end (train -> eval)."""
import csv
import json
import os
import sys

import numpy as np
import pytest

from dspark_ext.eval import EvalConfig, format_table, run_eval, write_report
from dspark_ext.eval.__main__ import main as eval_main
from dspark_ext.scheduler import SPSProfile
from dspark_ext.train.__main__ import main as train_main

import train_cases as tc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG = b"\x89PNG\r\n\x1a\n"


def _check_files(out, k, sweep):
    files = json.load(open(os.path.join(out, "eval.json")))["files"]
    for name in ("json", "per_position", "threshold_sweep", "rounds", "sps", "reliability"):
        assert os.path.getsize(files[name]) > 0, name
    res = json.load(open(files["json"]))
    for key in ("config", "baseline", "fixed", "calibration", "threshold_sweep", "sps",
                "recorded_rounds", "calibration_split"):
        assert key in res, key
    for key in ("accepted_length", "acceptance_rate", "conditional_acceptance",
                "prefix_survival", "tokens_per_s", "speedup", "mean_verified"):
        assert key in res["fixed"], key
    rows = list(csv.DictReader(open(files["per_position"])))
    assert [int(r["position"]) for r in rows] == list(range(k))
    assert all(r["ece_before"] != "" and r["temperature"] != "" for r in rows)
    sweep_rows = list(csv.DictReader(open(files["threshold_sweep"])))
    assert [float(r["threshold"]) for r in sweep_rows] == list(sweep)
    rounds = np.load(files["rounds"])
    assert rounds["confidence"].shape == (rounds["accept_len"].shape[0], k)
    assert res["recorded_rounds"] == rounds["accept_len"].shape[0] > 0
    assert ((rounds["confidence"] >= 0) & (rounds["confidence"] <= 1)).all()
    assert SPSProfile.load(files["sps"]).batch_tokens
    return files


def _check_plots(files):
    """The PNG plots, last in a test: without matplotlib the reliability plot is an SVG, the
    other two are not written, and the test is skipped here, after its other checks."""
    if "acceptance_plot" not in files:
        assert open(files["reliability"], "rb").read(5) in (b"<?xml", b"<svg "), files
    pytest.importorskip("matplotlib")
    for name in ("reliability", "acceptance_plot", "threshold_plot"):
        assert os.path.getsize(files[name]) > 0, name
        assert open(files[name], "rb").read(8) == PNG, name


def test_report_files_are_complete_and_replayable(tmp_path):
    with tc.one_thread():
        target = tc.trained_target()
        drafter = tc.fresh_drafter(target).eval()
        prompts = tc.chain_corpus(8, 5, seed=4).tolist()
        res = run_eval(target, drafter, prompts,
                       EvalConfig(temperature=1.0, max_new_tokens=10, batch_size=4,
                                  sweep=(0.2, 0.6), policy="threshold", sps_repeats=2))
        write_report(res, str(tmp_path))
    files = _check_files(str(tmp_path), 4, (0.2, 0.6))
    assert res["config"]["verify"] == "token" and res["policy_run"]["policy"] == "threshold"
    assert res["calibration_split"] == {"fit_prompts": 4, "held_out_prompts": 4}
    table = format_table(res)
    assert "tau" in table and "threshold sweep" in table
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import serving_sim
    finally:
        sys.path.pop(0)
    summary = serving_sim.main(["--smoke", "--steps", "2", "--rounds", files["rounds"],
                                "--sps", files["sps"], "--out", str(tmp_path / "sim")])
    assert summary["k"] == 4 and summary["sps"] == files["sps"]
    _check_plots(files)


@pytest.mark.slow
def test_cli_train_then_eval(tmp_path):
    with tc.one_thread():
        tc.trained_target().save_pretrained(tmp_path / "target")
        with open(tmp_path / "data.jsonl", "w") as f:
            for ex in tc.examples(8, 32):
                f.write(json.dumps({"input_ids": ex.input_ids, "loss_mask": ex.loss_mask}) + "\n")
        with open(tmp_path / "prompts.jsonl", "w") as f:
            for p in tc.chain_corpus(6, 5, seed=8).tolist():
                f.write(json.dumps({"input_ids": p}) + "\n")
        assert train_main(["--target", str(tmp_path / "target"), "--data",
                           str(tmp_path / "data.jsonl"), "--out", str(tmp_path / "run"),
                           "--block-size", "4", "--draft-layers", "1", "--markov-rank", "8",
                           "--num-anchors", "8", "--steps", "3", "--micro-batch", "2",
                           "--regenerate", "--regen-max-new-tokens", "12",
                           "--device", "cpu", "--no-progress"]) == 0
        regen = [json.loads(x) for x in open(tmp_path / "run" / "regenerated.jsonl")]
        assert len(regen) == 8 and all(sum(r["loss_mask"]) == 12 for r in regen)
        ckpt = tmp_path / "run" / "step_0000003"
        assert eval_main(["--target", str(tmp_path / "target"), "--drafter", str(ckpt),
                          "--prompts", str(tmp_path / "prompts.jsonl"), "--max-new-tokens", "8",
                          "--batch-size", "3", "--sweep", "0.3", "--device", "cpu",
                          "--policy", "scheduled", "--temperature", "0.7",
                          "--out", str(tmp_path / "eval")]) == 0
    files = _check_files(str(tmp_path / "eval"), 4, (0.3,))
    res = json.load(open(files["json"]))
    assert res["policy_run"]["policy"] == "scheduled" and res["config"]["temperature"] == 0.7
    _check_plots(files)
