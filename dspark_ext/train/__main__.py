"""``python -m dspark_ext.train``: train a DSpark (or DFlash) drafter against a Hugging Face
target, alone or under ``torchrun --nproc_per_node N`` (DDP; FSDP2 with --strategy fsdp).
Resumes automatically from ``<out>/latest`` unless --no-resume.

    python -m dspark_ext.train --target Qwen/Qwen3-4B --data train.jsonl --out runs/dspark \\
        --block-size 7 --draft-layers 5 --steps 20000 --micro-batch 1 --grad-accum 64
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

import torch

from .checkpoint import latest_checkpoint
from .data import Example, load_examples, pretokenised, regenerate
from .distributed import init_distributed, shutdown
from .losses import LossConfig
from .online_target import OnlineTarget
from .trainer import TrainConfig, Trainer


def default_layer_ids(num_layers: int, count: int = 5) -> List[int]:
    """DeepSpec's spacing: ``count`` layers evenly from 1 to num_layers - 3 (Qwen3-4B, 36
    layers: 1, 9, 17, 25, 33), clipped to what a small target has."""
    lo = min(1, num_layers - 2)
    hi = max(lo, num_layers - 3)
    if count <= 1 or hi == lo:
        return [lo]
    ids = sorted({round(lo + (hi - lo) * i / (count - 1)) for i in range(count)})
    return ids


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m dspark_ext.train", description=__doc__.split(
        "\n")[0])
    a = ap.add_argument_group("target and data")
    a.add_argument("--target", required=True, help="HF causal LM (path or hub id)")
    a.add_argument("--tokenizer", default=None, help="default: the target's")
    a.add_argument("--data", nargs="+", required=True,
                   help="text/source files, chat JSONL or pre-tokenised JSONL (input_ids)")
    a.add_argument("--format", default="auto", choices=["auto", "text", "chat", "tokens"])
    a.add_argument("--max-length", type=int, default=2048)
    a.add_argument("--regenerate", action="store_true",
                   help="replace responses by the target's own continuations first")
    a.add_argument("--regen-max-new-tokens", type=int, default=512)
    a.add_argument("--regen-temperature", type=float, default=1.0)
    a.add_argument("--regen-out", default=None,
                   help="where the regenerated data goes (pre-tokenised JSONL; reused if "
                        "present). Default: <out>/regenerated.jsonl")
    a.add_argument("--target-dtype", default="auto", choices=["auto", "float32", "bfloat16"])
    a.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    d = ap.add_argument_group("drafter")
    d.add_argument("--init", default=None, help="start from this drafter checkpoint")
    d.add_argument("--block-size", type=int, default=7)
    d.add_argument("--draft-layers", type=int, default=5)
    d.add_argument("--target-layer-ids", default=None, help="e.g. 1,9,17,25,33")
    d.add_argument("--mask-token-id", type=int, default=None)
    d.add_argument("--markov-rank", type=int, default=256)
    d.add_argument("--markov-head", default="vanilla", choices=["vanilla", "gated", "rnn"])
    d.add_argument("--no-confidence", action="store_true")
    d.add_argument("--confidence-without-markov", action="store_true")
    d.add_argument("--dflash", action="store_true",
                   help="DFlash baseline: no Markov / confidence head, CE loss only")
    d.add_argument("--num-anchors", type=int, default=512)
    lo = ap.add_argument_group("losses (defaults: the paper's)")
    lo.add_argument("--ce-weight", type=float, default=None)
    lo.add_argument("--l1-weight", type=float, default=None)
    lo.add_argument("--confidence-weight", type=float, default=None)
    lo.add_argument("--decay-gamma", type=float, default=4.0)
    o = ap.add_argument_group("optimisation")
    o.add_argument("--lr", type=float, default=6e-4)
    o.add_argument("--warmup-ratio", type=float, default=0.04)
    o.add_argument("--min-lr-ratio", type=float, default=0.0)
    o.add_argument("--weight-decay", type=float, default=0.0)
    o.add_argument("--max-grad-norm", type=float, default=1.0)
    o.add_argument("--steps", type=int, default=None)
    o.add_argument("--epochs", type=float, default=1.0)
    o.add_argument("--micro-batch", type=int, default=1)
    o.add_argument("--grad-accum", type=int, default=1)
    o.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    o.add_argument("--seed", type=int, default=0)
    r = ap.add_argument_group("run")
    r.add_argument("--out", default="dspark_train")
    r.add_argument("--log-every", type=int, default=10)
    r.add_argument("--save-every", type=int, default=0)
    r.add_argument("--no-resume", action="store_true")
    r.add_argument("--strategy", default="ddp", choices=["ddp", "fsdp", "none"])
    r.add_argument("--no-progress", action="store_true")
    r.add_argument("--cache", default=None,
                   help="optional on-disk bf16 hidden-state cache directory: built (size "
                        "printed first) when absent, then read instead of running the target")
    return ap.parse_args(argv)


def cli_tokenizer(name: Optional[str], target: str, files: List[str]):
    """``name`` (default: the target's) -- or None when ``name`` is not given and every file
    is pre-tokenised (transformers would otherwise build an empty default tokenizer for a
    directory without tokenizer files, whose EOS and size are meaningless)."""
    if name is None and pretokenised(files):
        return None
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(name or target)
    except Exception as exc:
        raise SystemExit(f"cannot load a tokenizer for {name or target}: {exc}")


def build_drafter(args, target_model, tokenizer):
    from ..drafters.dspark import DSparkConfig, DSparkDrafter
    if args.init:
        drafter = DSparkDrafter.from_pretrained(args.init, dtype=torch.float32)
    else:
        n = target_model.config.num_hidden_layers
        ids = ([int(i) for i in args.target_layer_ids.split(",")] if args.target_layer_ids
               else default_layer_ids(n))
        vocab = target_model.config.vocab_size
        mask = args.mask_token_id
        if mask is None:  # the first id the tokenizer never produces, else the last id
            used = len(tokenizer) if tokenizer is not None else vocab
            mask = used if used < vocab else vocab - 1
        conf = not (args.no_confidence or args.dflash)
        cfg = DSparkConfig.for_target(
            target_model.config, block_size=args.block_size, num_hidden_layers=args.draft_layers,
            target_layer_ids=ids, mask_token_id=mask,
            markov_rank=0 if args.dflash else args.markov_rank,
            markov_head_type=args.markov_head, enable_confidence_head=conf,
            confidence_head_with_markov=conf and not args.confidence_without_markov
            and not args.dflash, num_anchors=args.num_anchors)
        torch.manual_seed(args.seed)
        drafter = DSparkDrafter(cfg, dtype=torch.float32)
    drafter.init_from_target(target_model.get_input_embeddings().weight.float(),
                             target_model.get_output_embeddings().weight.float())
    return drafter


def loss_config(args) -> LossConfig:
    base = LossConfig.dflash(args.decay_gamma) if args.dflash else LossConfig(
        decay_gamma=args.decay_gamma)
    for name in ("ce_weight", "l1_weight", "confidence_weight"):
        if getattr(args, name) is not None:
            setattr(base, name, getattr(args, name))
    return base


def _examples(args, tokenizer, target_model, info) -> List[Example]:
    examples = load_examples(args.data, tokenizer, args.max_length, args.format)
    if not args.regenerate:
        return examples
    path = args.regen_out or os.path.join(args.out, "regenerated.jsonl")
    if info.is_main and not os.path.isfile(path):
        eos = getattr(tokenizer, "eos_token_id", None) if tokenizer is not None else None
        eos = eos if eos is not None else target_model.generation_config.eos_token_id
        sys.stderr.write(f"regenerating {len(examples)} responses with the target -> {path}\n")
        new = regenerate(examples, target_model, max_new_tokens=args.regen_max_new_tokens,
                         temperature=args.regen_temperature, eos_token_id=eos, seed=args.seed,
                         max_length=args.max_length)
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        with open(path + ".tmp", "w") as f:
            for ex in new:
                f.write(json.dumps({"input_ids": ex.input_ids, "loss_mask": ex.loss_mask}) + "\n")
        os.replace(path + ".tmp", path)
    if info.distributed:
        torch.distributed.barrier()
    return load_examples([path], None, args.max_length, "tokens")


def _cached(directory: str, target: OnlineTarget, examples, info):
    from .cache import CachedTarget, HiddenStateCache, build_cache
    if info.is_main and not HiddenStateCache.exists(directory):
        build_cache(directory, target, examples)
    if info.distributed:
        torch.distributed.barrier()
    cache = HiddenStateCache(directory)
    cache.check(examples)
    return CachedTarget.from_online(cache, target)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    info = init_distributed(args.device)
    from transformers import AutoModelForCausalLM
    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}.get(args.target_dtype)
    if dtype is None:
        dtype = torch.bfloat16 if info.device.type == "cuda" else torch.float32
    target_model = AutoModelForCausalLM.from_pretrained(args.target, dtype=dtype).to(info.device)
    tokenizer = cli_tokenizer(args.tokenizer, args.target, args.data)
    examples = _examples(args, tokenizer, target_model, info)
    drafter = build_drafter(args, target_model, tokenizer).to(info.device)
    target = OnlineTarget(target_model, drafter.target_layer_ids)
    if args.cache:
        target = _cached(args.cache, target, examples, info)
    cfg = TrainConfig(out_dir=args.out, steps=args.steps, epochs=args.epochs,
                      micro_batch=args.micro_batch, grad_accum=args.grad_accum, lr=args.lr,
                      warmup_ratio=args.warmup_ratio, min_lr_ratio=args.min_lr_ratio,
                      weight_decay=args.weight_decay, max_grad_norm=args.max_grad_norm,
                      num_anchors=args.num_anchors, seed=args.seed, precision=args.precision,
                      loss=loss_config(args), log_every=args.log_every,
                      save_every=args.save_every, strategy=args.strategy,
                      progress=not args.no_progress)
    torch.manual_seed(args.seed)
    trainer = Trainer(target, drafter, examples, cfg, info)
    if not args.no_resume and latest_checkpoint(args.out) is not None:
        step = trainer.resume(args.out)
        if info.is_main:
            sys.stderr.write(f"resumed from {latest_checkpoint(args.out)} at step {step}\n")
    trainer.train()
    shutdown(info)
    return 0


if __name__ == "__main__":
    sys.exit(main())
