"""Checkpoints: DeepSpec-format drafter + optimizer/scheduler/RNG/data position; a run
interrupted and resumed ends with exactly the parameters of the uninterrupted run."""
import json
import os
import shutil

import torch

from dspark_ext.drafters.dspark import DSparkDrafter
from dspark_ext.drafters.dspark.checkpoint import read_safetensors
from dspark_ext.train import OnlineTarget, TrainConfig, Trainer, latest_checkpoint
from dspark_ext.train.__main__ import main

import train_cases as tc


def _trainer(target, out, steps=6):
    drafter = tc.fresh_drafter(target)
    cfg = TrainConfig(out_dir=str(out), steps=steps, micro_batch=2, grad_accum=2, lr=3e-3,
                      warmup_ratio=0.34, progress=False, log_every=1)
    return Trainer(OnlineTarget(target, tc.LAYER_IDS), drafter, tc.examples(12, 32), cfg)


def test_resume_equals_uninterrupted_run(tmp_path):
    with tc.one_thread():
        target = tc.trained_target()
        straight = _trainer(target, tmp_path / "a")
        straight.train()
        first = _trainer(target, tmp_path / "b")
        first.train(steps=3)            # 3 steps (epoch boundary inside), checkpoint
        ckpt = latest_checkpoint(str(tmp_path / "b"))
        assert ckpt.endswith("step_0000003")
        resumed = _trainer(target, tmp_path / "b")  # a fresh process would build this
        assert resumed.resume(str(tmp_path / "b")) == 3
        resumed.train()
    for (name, p), q in zip(straight.drafter.named_parameters(), resumed.drafter.parameters()):
        assert torch.equal(p, q), name
    assert straight.scheduler.last_epoch == resumed.scheduler.last_epoch == 6
    s1, s2 = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    for k in s1:
        assert torch.equal(s1[k]["exp_avg_sq"], s2[k]["exp_avg_sq"])
    logs = [json.loads(x) for x in open(tmp_path / "b" / "train_log.jsonl")]
    assert [r["step"] for r in logs] == [1, 2, 3, 4, 5, 6]
    a = [json.loads(x)["loss"] for x in open(tmp_path / "a" / "train_log.jsonl")]
    assert a == [r["loss"] for r in logs]


def test_checkpoint_is_a_deepspec_drafter(tmp_path):
    with tc.one_thread():
        trainer = _trainer(tc.trained_target(), tmp_path, steps=1)
        trainer.train()
    path = latest_checkpoint(str(tmp_path))
    assert sorted(os.listdir(path)) == ["config.json", "model.safetensors", "trainer.json",
                                        "training_state_rank0.pt"]
    cfg = json.load(open(os.path.join(path, "config.json")))
    assert cfg["architectures"] == ["Qwen3DSparkModel"] and cfg["block_size"] == 4
    assert cfg["target_layer_ids"] == tc.LAYER_IDS and cfg["markov_rank"] == 8
    loaded = DSparkDrafter.from_pretrained(path)
    for (name, p), q in zip(trainer.drafter.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name


def test_cli_rerun_resumes_an_interrupted_run(tmp_path):
    """The command line resumes from <out>/latest: a run cut after its step-2 checkpoint and
    rerun ends with the step-4 weights of the run that was never cut."""
    with tc.one_thread():
        tc.trained_target().save_pretrained(tmp_path / "target")
        with open(tmp_path / "data.jsonl", "w") as f:
            for ex in tc.examples(8, 24):
                f.write(json.dumps({"input_ids": ex.input_ids, "loss_mask": ex.loss_mask})
                        + "\n")
        args = ["--target", str(tmp_path / "target"), "--data", str(tmp_path / "data.jsonl"),
                "--out", str(tmp_path / "run"), "--block-size", "4", "--draft-layers", "1",
                "--markov-rank", "8", "--num-anchors", "8", "--steps", "4", "--save-every",
                "2", "--micro-batch", "2", "--device", "cpu", "--no-progress"]
        assert main(args) == 0
        full = read_safetensors(str(tmp_path / "run" / "step_0000004"))
        shutil.rmtree(tmp_path / "run" / "step_0000004")  # "interrupted" after step 2
        (tmp_path / "run" / "latest").write_text("step_0000002\n")
        assert main(args) == 0
    again = read_safetensors(str(tmp_path / "run" / "step_0000004"))
    for name in full:
        assert torch.equal(full[name], again[name]), name
