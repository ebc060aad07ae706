"""``python -m dspark_ext.eval``: evaluate a drafter on a prompt set against its target.

    python -m dspark_ext.eval --target Qwen/Qwen3-4B --drafter runs/dspark/step_0020000 \\
        --prompts gsm8k.jsonl mt-bench.jsonl --temperature 1.0 --max-new-tokens 256 \\
        --out eval_out
    python bench/serving_sim.py --rounds eval_out/rounds.npz --sps eval_out/sps.json

--drafter: a DSpark / DFlash checkpoint directory, ``ngram`` (prompt lookup), ``model:PATH``
(a small HF causal LM drafting autoregressively) or ``self`` (the target drafts for itself:
acceptance 1 at T = 0, a sanity check of the pipeline).
"""
from __future__ import annotations

import argparse
import sys
from typing import List, Optional

import torch

from ..train.__main__ import cli_tokenizer
from .prompts import load_prompts
from .report import format_table, write_report
from .runner import SWEEP, EvalConfig, run_eval


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dspark_ext.eval",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--target", required=True)
    ap.add_argument("--drafter", required=True)
    ap.add_argument("--prompts", nargs="+", required=True)
    ap.add_argument("--tokenizer", default=None)
    ap.add_argument("--max-prompts", type=int, default=None)
    ap.add_argument("--max-prompt-tokens", type=int, default=None)
    ap.add_argument("--temperature", type=float, default=0.0)
    ap.add_argument("--gamma", type=int, default=None, help="drafts per round (default: block)")
    ap.add_argument("--verify", default=None, choices=["greedy", "token", "block"])
    ap.add_argument("--policy", default="fixed", choices=["fixed", "threshold", "scheduled"])
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--sweep", default=",".join(str(t) for t in SWEEP),
                    help="comma-separated thresholds ('' to skip)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--calibration-fraction", type=float, default=0.5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--no-sps", action="store_true")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    ap.add_argument("--out", default="eval_out")
    return ap.parse_args(argv)


def load_drafter(spec: str, target_model, device, dtype):
    from ..drafters import ModelDrafter, NgramDrafter
    if spec == "ngram":
        return NgramDrafter()
    if spec == "self":
        return ModelDrafter(target_model)
    if spec.startswith("model:"):
        from transformers import AutoModelForCausalLM
        small = AutoModelForCausalLM.from_pretrained(spec[6:], dtype=dtype).to(device).eval()
        return ModelDrafter(small)
    from ..drafters.dspark import DSparkDrafter
    return DSparkDrafter.from_pretrained(spec, dtype=dtype, device=device).eval()


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    from transformers import AutoModelForCausalLM
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(args.dtype)
    if dtype is None:
        dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    target = AutoModelForCausalLM.from_pretrained(args.target, dtype=dtype).to(device).eval()
    tokenizer = cli_tokenizer(args.tokenizer, args.target, args.prompts)
    prompts = load_prompts(args.prompts, tokenizer, args.max_prompts, args.max_prompt_tokens)
    eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
    if eos is None:  # int, list of ints or None
        eos = target.generation_config.eos_token_id
    drafter = load_drafter(args.drafter, target, device, dtype)
    cfg = EvalConfig(temperature=args.temperature, gamma=args.gamma, verify=args.verify,
                     policy=args.policy, threshold=args.threshold,
                     sweep=[float(t) for t in args.sweep.split(",") if t.strip()],
                     max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                     seed=args.seed, calibration_fraction=args.calibration_fraction,
                     eos_token_id=eos, baseline=not args.no_baseline,
                     sps_points=() if args.no_sps else None)
    res = run_eval(target, drafter, prompts, cfg)
    files = write_report(res, args.out)
    print(format_table(res))
    print("wrote: " + ", ".join(sorted(files.values())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
