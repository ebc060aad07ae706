"""Stages of ``scripts/build_default.sh`` that are not a training run:

    python -m dspark_ext.bundled.build seed    --work build/default
    python -m dspark_ext.bundled.build data    --work build/default
    python -m dspark_ext.bundled.build regen   --work build/default
    python -m dspark_ext.bundled.build sts     --work build/default --drafter dspark
    python -m dspark_ext.bundled.build calibrate --work build/default  (see .calibrate)
    python -m dspark_ext.bundled.build install --work build/default

``seed`` starts a work folder from the installed artefacts instead of training the tokenizer
and LMs again (the bundled target, AR draft and tokenizer, the target's token streams
re-tokenised, the bundled drafters under ``seed/`` for ``--init``), so a later build
continues the bundled run; ``data`` writes the drafters' training windows (the target's own training stream) and the
held-out evaluation prompts; ``regen`` has the target continue prompts cut from the training
modules (greedy for one half, T = 1 for the other) into the drafters' later training data;
``sts`` fits Sequential Temperature Scaling on rounds of the
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

__all__ = ["final_checkpoint", "seed_from_bundled", "prepare_data", "regenerate_data", "fit_sts_file", "install",
           "main"]

PACKAGE_MODELS = os.path.join(os.path.dirname(__file__), "models")
STS_TEMPERATURES = (0.0, 1.0)


def final_checkpoint(run_dir: str) -> str:
    """The checkpoint ``python -m dspark_ext.train`` wrote last (``<run>/latest`` names it)."""
    latest = os.path.join(run_dir, "latest")
    if not os.path.isfile(latest):
        raise FileNotFoundError(f"{run_dir} has no finished training run (no 'latest')")
    with open(latest) as f:
        return os.path.join(run_dir, f.read().strip())


def seed_from_bundled(work: str, src: str = PACKAGE_MODELS, corpus=None) -> None:
    """Fill ``work`` from the installed artefacts in ``src``: ``tokenizer/``,
    ``target/final``, ``ar_draft/final``, ``target/tokens.pt`` (the corpus re-tokenised, as
    :func:`.lm.train_lm` caches it) and ``seed/dspark``, ``seed/dflash`` (the drafters, for
    ``python -m dspark_ext.train --init``). Refuses a corpus whose fingerprint differs from
    the one the bundled target was trained on; existing outputs are kept."""
    from .corpus import collect
    from .lm import token_stream
    from .tokenizer import load_tokenizer
    with open(os.path.join(src, "target", "training.json")) as f:
        trained_on = json.load(f)["corpus"]
    corpus = corpus if corpus is not None else collect()
    here = corpus.fingerprint()
    if here["sha256"] != trained_on["sha256"]:
        raise SystemExit(f"src: the bundled target in {src} was trained on corpus "
                         f"{trained_on['sha256'][:12]} ({trained_on['python']}), this machine "
                         f"has {here['sha256'][:12]} ({here['python']}); rebuild from scratch")
    tok_dir = os.path.join(work, "tokenizer")
    if not os.path.isfile(os.path.join(tok_dir, "tokenizer.json")):
        os.makedirs(tok_dir, exist_ok=True)
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(os.path.join(src, "target", name), tok_dir)
    pairs = [("target", os.path.join("target", "final")),
             ("ar_draft", os.path.join("ar_draft", "final")),
             ("dspark", os.path.join("seed", "dspark")),
             ("dflash", os.path.join("seed", "dflash"))]
    for name, rel in pairs:
        dst = os.path.join(work, rel)
        if not os.path.isdir(dst):
            shutil.copytree(os.path.join(src, name), dst)
    cache = os.path.join(work, "target", "tokens.pt")
    if not os.path.isfile(cache):
        tok = load_tokenizer(tok_dir)
        torch.save({"train": token_stream((corpus.read(r) for r in corpus.train), tok),
                    "heldout": token_stream((corpus.read(r) for r in corpus.heldout), tok),
                    "fingerprint": here}, cache)
    print(f"seed: {work} from {src} (corpus {here['sha256'][:12]})")


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


REGEN_TEMPERATURES = (0.0, 1.0)


def regenerate_data(work: str, per_file: int = 3, prompt_tokens: int = 128,
                    new_tokens: int = 384, batch_size: int = 64, seed: int = 0,
                    corpus=None) -> None:
    """``data/regen_T0.jsonl`` and ``data/regen_T1.jsonl``: training-module prompts (cut after
    ``def`` lines, as the evaluation's are) continued by the target, greedy on the even
    prompts and at T = 1 on the odd ones; only the continuation is supervised. Each file is
    written whole (atomically) and skipped when present, so the stage resumes. ``corpus``:
    default the running Python's standard library (:func:`.corpus.collect`)."""
    from transformers import AutoModelForCausalLM
    from ..train.data import Example, regenerate
    from .corpus import collect
    from .data import def_prompts
    from .tokenizer import load_tokenizer
    tok = load_tokenizer(os.path.join(work, "tokenizer"))
    corpus = corpus if corpus is not None else collect()
    prompts = def_prompts(corpus, corpus.train, tok, per_file, prompt_tokens)
    from . import fast_drafter_dtype
    # bfloat16 where the CPU has bfloat16 units; elsewhere it is emulated and ~5x slower than
    # float32 (measured on an AVX2-only EPYC), so the continuations are generated in float32.
    target = AutoModelForCausalLM.from_pretrained(os.path.join(work, "target", "final"),
                                                  dtype=fast_drafter_dtype(torch.float32)).eval()
    for i, t in enumerate(REGEN_TEMPERATURES):
        path = os.path.join(work, "data", f"regen_T{t:g}.jsonl")
        if os.path.isfile(path):
            continue
        # Prompt tokens unsupervised: regenerate() continues exactly those.
        mine = [Example(p["input_ids"], [0] * len(p["input_ids"]))
                for p in prompts[i::len(REGEN_TEMPERATURES)]]
        out = regenerate(mine, target, max_new_tokens=new_tokens, temperature=t,
                         eos_token_id=target.config.eos_token_id, batch_size=batch_size,
                         seed=seed + i, max_length=prompt_tokens + new_tokens)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "w") as f:
            for ex in out:
                f.write(json.dumps({"input_ids": ex.input_ids, "loss_mask": ex.loss_mask}) + "\n")
        os.replace(path + ".tmp", path)
        print(f"regen T={t:g}: {len(out)} continuations, "
              f"{sum(sum(ex.loss_mask) for ex in out)} supervised tokens -> {path}")


def fit_sts_file(work: str, drafter: str, max_new_tokens: int = 96, gamma: int = 7) -> dict:
    """Fit STS on the fit split (the first half, as the evaluation splits) at each decoding
    temperature; returns and writes {"temperatures": {T: [K floats]}, ...}."""
    from transformers import AutoModelForCausalLM
    from ..drafters.dspark import DSparkDrafter
    from ..eval.runner import EvalConfig, speculative, split_prompts
    from ..calibration import fit_sts
    from ..decoding import FixedLength, SpeculativeDecoder
    ckpt = final_checkpoint(os.path.join(work, drafter))
    target = AutoModelForCausalLM.from_pretrained(os.path.join(work, "target", "final"),
                                                  dtype=torch.float32).eval()
    model = DSparkDrafter.from_pretrained(ckpt, dtype=torch.float32).eval()
    prompts = [p["input_ids"] for p in _read_prompts(work)]
    fit_prompts, _ = split_prompts(prompts, 0.5)
    decoder = SpeculativeDecoder(target, model, gamma=gamma)
    fits = {}
    for t in STS_TEMPERATURES:
        cfg = EvalConfig(temperature=t, max_new_tokens=max_new_tokens, batch_size=8,
                         eos_token_id=target.config.eos_token_id)
        verify = "greedy" if t == 0 else "token"
        run = speculative(decoder, fit_prompts, cfg, FixedLength(gamma), verify, gamma)
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
        for extra in ("sts.json", "calibration.json", "trainer.json"):
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
    ap.add_argument("stage", choices=["seed", "data", "regen", "sts", "calibrate", "install"])
    ap.add_argument("--work", default="build/default")
    # Only DSpark has a confidence head to calibrate.
    ap.add_argument("--drafter", default="dspark", choices=["dspark"])
    ap.add_argument("--dest", default=PACKAGE_MODELS)
    ap.add_argument("--per-file", type=int, default=3, help="regen: prompts per training file")
    ap.add_argument("--new-tokens", type=int, default=384, help="regen: continuation length")
    a = ap.parse_args(argv)
    if a.stage == "seed":
        seed_from_bundled(a.work)
    elif a.stage == "data":
        prepare_data(a.work)
    elif a.stage == "regen":
        if a.per_file < 1 or a.new_tokens < 1:
            ap.error(f"--per-file and --new-tokens must be >= 1, got {a.per_file}, "
                     f"{a.new_tokens}")
        regenerate_data(a.work, per_file=a.per_file, new_tokens=a.new_tokens)
    elif a.stage == "sts":
        fit_sts_file(a.work, a.drafter)
    elif a.stage == "calibrate":
        from .calibrate import calibrate_file
        calibrate_file(a.work, a.drafter)
    else:
        install(a.work, a.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
