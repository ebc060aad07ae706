"""The training entry point under torchrun: 2 CPU processes (DDP, and FSDP2, over gloo) end
with the parameters of 1 process that reads the same global batch through gradient
accumulation; in one process, accumulation equals one large micro-batch; an FSDP2 run
resumed from a sharded checkpoint ends exactly where the uninterrupted one did."""
import json
import os
import subprocess
import sys

import pytest
import torch

from dspark_ext.drafters.dspark.checkpoint import read_safetensors
from dspark_ext.train import latest_checkpoint
from dspark_ext.train.__main__ import main

import train_cases as tc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _args(tmp_path, accum, micro=2):
    return ["--target", str(tmp_path / "target"), "--data", str(tmp_path / "data.jsonl"),
            "--block-size", "4", "--draft-layers", "1",
            "--target-layer-ids", "0,1", "--markov-rank", "8", "--num-anchors", "8",
            "--steps", "4", "--micro-batch", str(micro), "--grad-accum", str(accum), "--lr", "3e-3",
            "--device", "cpu", "--no-progress", "--log-every", "1"]


@pytest.mark.slow
def test_two_processes_and_accumulation_equal_one_process_with_the_same_global_batch(
        tmp_path):
    with tc.one_thread():
        tc.trained_target().save_pretrained(tmp_path / "target")
    with open(tmp_path / "data.jsonl", "w") as f:
        for ex in tc.examples(16, 40, seed=3):
            f.write(json.dumps({"input_ids": ex.input_ids, "loss_mask": ex.loss_mask}) + "\n")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=ROOT)
    # One launch, two trainings (DDP, then FSDP2) through the CLI's main: see the worker.
    worker = os.path.join(ROOT, "tests", "train_dist_worker.py")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                          "--nproc_per_node", "2", worker, str(tmp_path), *_args(tmp_path, 1)],
                         env=env, capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert two.returncode == 0, two.stderr[-3000:]
    with tc.one_thread():
        assert main(_args(tmp_path, 2) + ["--out", str(tmp_path / "one")]) == 0
        assert main(_args(tmp_path, 1, micro=4) + ["--out", str(tmp_path / "big")]) == 0
    resumed = read_safetensors(latest_checkpoint(str(tmp_path / "fsdp")))
    uncut = read_safetensors(str(tmp_path / "fsdp_uninterrupted"))
    for name in uncut:
        assert torch.equal(resumed[name], uncut[name]), name
    runs = ("one", "ddp", "fsdp", "big")
    ckpts = [latest_checkpoint(str(tmp_path / d)) for d in runs]
    assert all(c is not None and c.endswith("step_0000004") for c in ckpts)
    weights = [read_safetensors(c) for c in ckpts]
    w1 = weights[0]
    for run, w in zip(runs[1:], weights[1:]):
        assert w.keys() == w1.keys(), run
        for name in w1:
            torch.testing.assert_close(w[name], w1[name], atol=2e-6, rtol=1e-5,
                                       msg=lambda m, run=run, name=name: f"{run} {name}: {m}")
    init = tc.fresh_drafter(tc.trained_target())  # the trained weights did move
    moved = sum(not torch.allclose(init.state_dict()[n], w1[n]) for n in w1)
    assert moved >= len(w1) - 2  # all but the frozen embedding and LM head
    for run in ("ddp", "fsdp"):
        states = os.listdir(latest_checkpoint(str(tmp_path / run)))
        assert "training_state_rank0.pt" in states and "training_state_rank1.pt" in states
    logs = {d: [json.loads(x) for x in open(tmp_path / d / "train_log.jsonl")] for d in runs}
    for run in runs[1:]:
        for a, b in zip(logs["one"], logs[run]):
            assert a["tokens"] == b["tokens"] and abs(a["loss"] - b["loss"]) < 1e-5, run
