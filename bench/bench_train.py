#!/usr/bin/env python
"""Training throughput of the online-target trainer (issue 9's benchmark).

    PYTHONPATH=. python bench/bench_train.py [--steps N] [--seq-len S] [--micro-batch B]
                                             [--precision fp32|bf16] [--out DIR] [--smoke]

A ~10M-parameter random Qwen3 target (vocab 8192, hidden 256, 6 layers) and a DSpark drafter
for it (block 7, 2 draft layers, features of target layers 1, 2, 3, Markov rank 64, confidence
head) train on random token sequences (throughput does not depend on the content). After
warm-up steps, it reports tokens/s (sequence tokens read by the target per second) and the
share of each step spent in the target's forward (features + the LM head at the supervised
slots), the drafter's forward + backward (with the losses) and the optimizer (clipping +
AdamW + schedule), from the trainer's own per-step timers. It also reports the disk that an
offline bf16 hidden-state cache (DeepSpec's ``prepare_target_cache``: every feature layer and
the last hidden state of every token) would have needed for the same data, which the online
target never writes, and the same formula for Qwen3-4B's drafter layers. JSON in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from dspark_ext.drafters.dspark import DSparkConfig, DSparkDrafter  # noqa: E402
from dspark_ext.train import (Example, OnlineTarget, TrainConfig, Trainer,  # noqa: E402
                              cache_bytes)


def build_target(vocab=8192, hidden=256, layers=6):
    import transformers
    cfg = transformers.Qwen3Config(vocab_size=vocab, hidden_size=hidden, intermediate_size=768,
                                   num_hidden_layers=layers, num_attention_heads=8,
                                   num_key_value_heads=4, head_dim=32,
                                   max_position_embeddings=4096, tie_word_embeddings=False,
                                   attn_implementation="sdpa")
    torch.manual_seed(0)
    return transformers.Qwen3ForCausalLM(cfg).eval()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--micro-batch", type=int, default=4)
    ap.add_argument("--num-anchors", type=int, default=64)
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, 2 steps (seconds)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    args = ap.parse_args(argv)
    if args.smoke:
        args.steps, args.warmup, args.seq_len, args.micro_batch = 2, 1, 64, 1
    target = build_target(*((512, 64, 3) if args.smoke else ()))
    n_target = sum(p.numel() for p in target.parameters())
    layer_ids = [1] if args.smoke else [1, 2, 3]
    dcfg = DSparkConfig.for_target(target.config, block_size=7, num_hidden_layers=1 if args.smoke
                                   else 2, target_layer_ids=layer_ids,
                                   mask_token_id=target.config.vocab_size - 1, markov_rank=64,
                                   num_anchors=args.num_anchors)
    drafter = DSparkDrafter(dcfg)
    drafter.init_from_target(target.get_input_embeddings().weight,
                             target.get_output_embeddings().weight)
    n_train = sum(p.numel() for p in drafter.parameters() if p.requires_grad)
    total = args.warmup + args.steps
    g = torch.Generator().manual_seed(0)
    vocab = target.config.vocab_size
    examples = [Example(torch.randint(0, vocab - 1, (args.seq_len,), generator=g).tolist(),
                        [0] * 16 + [1] * (args.seq_len - 16))
                for _ in range(total * args.micro_batch)]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(out_dir=tmp, steps=total, micro_batch=args.micro_batch,
                          precision=args.precision, progress=False, save_final=False,
                          log_every=1000)
        trainer = Trainer(OnlineTarget(target, layer_ids), drafter, examples, cfg)
        recs = trainer.train()[args.warmup:]
    tokens = sum(r["tokens"] for r in recs)
    step_s = sum(r["step_s"] for r in recs)
    parts = {k: sum(r[f"time_{k}_s"] for r in recs) for k in ("target", "drafter", "optimizer")}
    other = step_s - sum(parts.values())
    run_tokens = sum(len(e.input_ids) for e in examples)
    res = {
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{torch.get_num_threads()} threads, torch {torch.__version__}",
        "target_params": n_target, "drafter_trainable_params": n_train,
        "seq_len": args.seq_len, "micro_batch": args.micro_batch,
        "num_anchors": args.num_anchors, "block_size": 7, "precision": args.precision,
        "steps_timed": len(recs), "tokens_per_s": tokens / step_s,
        "step_ms": 1000 * step_s / len(recs),
        "share": {k: v / step_s for k, v in parts.items()} | {"data_and_other": other / step_s},
        "cache_bytes_this_run": cache_bytes(run_tokens, len(layer_ids),
                                            target.config.hidden_size),
        "cache_bytes_per_token": cache_bytes(1, len(layer_ids), target.config.hidden_size),
        "cache_bytes_per_token_qwen3_4b": cache_bytes(1, 5, 2560),
        "run_tokens": run_tokens,
        "final_loss": recs[-1]["loss"],
    }
    print(f"target {n_target / 1e6:.2f}M params, drafter {n_train / 1e6:.2f}M trainable; "
          f"seq {args.seq_len} x micro-batch {args.micro_batch}, {args.num_anchors} anchors, "
          f"{args.precision}")
    print(f"{res['tokens_per_s']:.0f} tokens/s, {res['step_ms']:.0f} ms/step; share: " +
          ", ".join(f"{k} {100 * v:.1f}%" for k, v in res["share"].items()))
    print(f"a bf16 hidden-state cache of these {run_tokens} tokens: "
          f"{res['cache_bytes_this_run'] / 1e6:.1f} MB ({res['cache_bytes_per_token']} B/token;"
          f" Qwen3-4B with 5 feature layers: {res['cache_bytes_per_token_qwen3_4b']} B/token)")
    os.makedirs(args.out, exist_ok=True)
    name = "bench_train_smoke.json" if args.smoke else f"bench_train_{args.precision}.json"
    with open(os.path.join(args.out, name), "w") as f:
        json.dump(res, f, indent=1)
    return res


if __name__ == "__main__":
    main()
