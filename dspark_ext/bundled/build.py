"""Stages of ``scripts/build_default.sh`` that are not a training run:

    python -m dspark_ext.bundled.build data    --work build/default
    python -m dspark_ext.bundled.build sts     --work build/default --drafter dspark
    python -m dspark_ext.bundled.build install --work build/default

``data`` writes the drafters' training windows (the target's own training stream) and the
held-out evaluation prompts; ``sts`` fits Sequential Temperature Scaling on rounds of the
drafter over the *fit* half of the held-out prompts at T = 0 and T = 1 (the calibration is
reported on the other half by the evaluation) and writes ``sts.json`` next to the
checkpoint; ``install`` copies the final artefacts into the package (``models/``) in bf16.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from typing import List, Optional

import torch

__all__ = ["final_checkpoint", "prepare_data", "fit_sts_file", "install", "main"]

PACKAGE_MODELS = os.path.join(os.path.dirname(__file__), "models")
STS_TEMPERATURES = (0.0, 1.0)


def final_checkpoint(run_dir: str) -> str:
    """The checkpoint ``python -m dspark_ext.train`` wrote last (``<run>/latest`` names it)."""
    latest = os.path.join(run_dir, "latest")
    if not os.path.isfile(latest):
        raise FileNotFoundError(f"{run_dir} has no finished training run (no 'latest')")
    with open(latest) as f:
        return os.path.join(run_dir, f.read().strip())


def prepare_data(work: str, seq_len: int = 512) -> None:
    from .corpus import collect
    from .data import heldout_prompts, write_drafter_data, write_prompts
    from .tokenizer import load_tokenizer
    streams = torch.load(os.path.join(work, "target", "tokens.pt"))
    n = write_drafter_data(streams["train"], os.path.join(work, "data", "drafter_train.jsonl"),
                           seq_len)
    tok = load_tokenizer(os.path.join(work, "tokenizer"))
    prompts = heldout_prompts(collect(), tok)
    write_prompts(prompts, os.path.join(work, "data", "heldout_prompts.jsonl"))
    print(f"data: {n} drafter windows of {seq_len}, {len(prompts)} held-out prompts")


def fit_sts_file(work: str, drafter: str, max_new_tokens: int = 96, gamma: int = 7) -> dict:
    """Fit STS on the fit split (the first half, as the evaluation splits) at each decoding
    temperature; returns and writes {"temperatures": {T: [K floats]}, ...}."""
    from transformers import AutoModelForCausalLM
    from ..drafters.dspark import DSparkDrafter
    from ..eval.runner import EvalConfig, _speculative, _split
    from ..calibration import fit_sts
    from ..decoding import FixedLength, SpeculativeDecoder
    ckpt = final_checkpoint(os.path.join(work, drafter))
    target = AutoModelForCausalLM.from_pretrained(os.path.join(work, "target", "final"),
                                                  dtype=torch.float32).eval()
    model = DSparkDrafter.from_pretrained(ckpt, dtype=torch.float32).eval()
    prompts = [p["input_ids"] for p in _read_prompts(work)]
    fit_prompts, _ = _split(prompts, 0.5)
    decoder = SpeculativeDecoder(target, model, gamma=gamma)
    fits = {}
    for t in STS_TEMPERATURES:
        cfg = EvalConfig(temperature=t, max_new_tokens=max_new_tokens, batch_size=8,
                         eos_token_id=target.config.eos_token_id)
        verify = "greedy" if t == 0 else "token"
        run = _speculative(decoder, fit_prompts, cfg, FixedLength(gamma), verify, gamma)
        fits[str(t)] = [float(x) for x in fit_sts(*run["stats"].calibration_inputs())]
    out = {"temperatures": fits, "fit_prompts": len(fit_prompts), "gamma": gamma,
           "max_new_tokens": max_new_tokens, "checkpoint": os.path.basename(ckpt)}
    with open(os.path.join(ckpt, "sts.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(f"sts {drafter}: {fits}")
    return out


def _read_prompts(work: str) -> List[dict]:
    with open(os.path.join(work, "data", "heldout_prompts.jsonl")) as f:
        return [json.loads(line) for line in f if line.strip()]


def install(work: str, dest: str = PACKAGE_MODELS) -> None:
    """Copy the final target (bf16 already), the AR draft model and the drafters (cast to
    bf16) into ``dest``, with the held-out prompts and a manifest of sizes."""
    from ..drafters.dspark import DSparkDrafter
    os.makedirs(dest, exist_ok=True)
    for name in ("target", "ar_draft"):
        src, dst = os.path.join(work, name, "final"), os.path.join(dest, name)
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(src, dst)
    for name in ("dspark", "dflash"):
        ckpt, dst = final_checkpoint(os.path.join(work, name)), os.path.join(dest, name)
        shutil.rmtree(dst, ignore_errors=True)
        DSparkDrafter.from_pretrained(ckpt, dtype=torch.bfloat16).save_pretrained(dst)
        for extra in ("sts.json", "trainer.json"):
            if os.path.isfile(os.path.join(ckpt, extra)):
                shutil.copy(os.path.join(ckpt, extra), dst)
    shutil.copy(os.path.join(work, "data", "heldout_prompts.jsonl"), dest)
    sizes = {}
    for name in ("target", "dspark", "dflash", "ar_draft"):
        st = os.path.join(dest, name, "model.safetensors")
        sizes[name] = os.path.getsize(st)
    total = sum(sizes.values())
    with open(os.path.join(dest, "manifest.json"), "w") as f:
        json.dump({"weights_bytes": sizes, "total_bytes": total}, f, indent=1)
    print(f"installed into {dest}: {total / 1e6:.1f} MB of weights {sizes}")
    if total > 40e6:
        raise SystemExit(f"the bundled weights take {total / 1e6:.1f} MB, over the 40 MB budget")


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dspark_ext.bundled.build")
    ap.add_argument("stage", choices=["data", "sts", "install"])
    ap.add_argument("--work", default="build/default")
    # Only DSpark has a confidence head to calibrate.
    ap.add_argument("--drafter", default="dspark", choices=["dspark"])
    ap.add_argument("--dest", default=PACKAGE_MODELS)
    a = ap.parse_args(argv)
    if a.stage == "data":
        prepare_data(a.work)
    elif a.stage == "sts":
        fit_sts_file(a.work, a.drafter)
    else:
        install(a.work, a.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
