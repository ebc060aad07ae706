"""Trainer details: bf16 autocast, the progress line, the JSONL log, the learning-rate
schedule."""
import json
import math

import pytest
import torch

from dspark_ext.train import (Example, OnlineTarget, TrainConfig, Trainer, load_examples,
                              sample_anchors)
from dspark_ext.train.optim import lr_factor

import train_cases as tc


def test_bf16_autocast_progress_and_log(tmp_path, capsys):
    with tc.one_thread():
        target = tc.trained_target()
        cfg = TrainConfig(out_dir=str(tmp_path), steps=3, micro_batch=2, precision="bf16",
                          log_every=1, save_final=False)
        trainer = Trainer(OnlineTarget(target, tc.LAYER_IDS), tc.fresh_drafter(target),
                          tc.examples(6, 24), cfg)
        recs = trainer.train()
    assert trainer.precision == "bf16"
    assert all(math.isfinite(r["loss"]) and r["grad_norm"] is not None for r in recs)
    err = capsys.readouterr().err
    assert "hidden-state cache of this run would need" in err
    for part in ("loss", "ce", "l1", "conf", "c*", "tau~", "tok/s", "step 3/3"):
        assert part in err, part
    log = [json.loads(x) for x in open(tmp_path / "train_log.jsonl")]
    assert [r["step"] for r in log] == [1, 2, 3]
    for key in ("loss", "ce", "l1", "confidence", "c_star_mean", "tau_estimate",
                "tokens_per_s", "time_target_s", "time_drafter_s", "time_optimizer_s", "lr"):
        assert log[-1][key] is not None, key


def test_warmup_then_cosine():
    assert lr_factor(0, 100, 10) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10) == pytest.approx(0.5)
    assert lr_factor(100, 100, 10, min_lr_ratio=0.1) == pytest.approx(0.1)


def test_bad_inputs_name_the_argument(tmp_path):
    target = tc.random_target()
    with pytest.raises(ValueError, match="final layer"):
        OnlineTarget(target, [tc.LAYERS - 1])
    with pytest.raises(ValueError, match="precision"):
        Trainer(OnlineTarget(target, tc.LAYER_IDS), tc.fresh_drafter(target),
                tc.examples(2, 8), TrainConfig(out_dir=str(tmp_path), precision="fp8"))
    with pytest.raises(ValueError, match="num_anchors"):
        sample_anchors(torch.ones(1, 8), 0, [0])
    with pytest.raises(ValueError, match="same length"):
        Example([1, 2], [1])
    path = tmp_path / "x.jsonl"
    path.write_text('{"input_ids": [1, 2]}\nnot json\n')
    with pytest.raises(ValueError, match="x.jsonl:2"):
        load_examples([str(path)])
