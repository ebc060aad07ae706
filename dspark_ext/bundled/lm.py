"""Pre-training of the bundled causal LMs (the target, and the small autoregressive draft
model of the HF-assisted comparison) on the standard-library corpus.

``python -m dspark_ext.bundled.lm --arch target --tokenizer DIR --out DIR --steps N``

Qwen3 architecture (``Qwen3ForCausalLM``), tied embeddings. The training stream is every
training file tokenised and joined with EOS; step s reads ``batch`` windows of ``seq_len + 1``
tokens at offsets drawn from a generator seeded by (seed, s), so the data a step sees is a
pure function of the step and a resumed run continues exactly where it stopped. bf16
autocast on CPU (AMX/AVX-512-BF16 make it ~1.8x fp32 here), fp32 master weights, AdamW with
warm-up + cosine, gradient clipping. A full training state is written atomically every
``--save-every`` steps; the final model is saved as bf16 safetensors with its tokenizer.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from typing import List, Optional

import torch

__all__ = ["ARCHS", "make_config", "token_stream", "batch_at", "train_lm", "main"]

# Sizes chosen for the budget: everything trains in a few CPU-hours on 2 cores and all the
# committed weights stay under 40 MB in bf16 (the target is ~9M parameters).
ARCHS = {
    "target": dict(hidden_size=256, intermediate_size=768, num_hidden_layers=10,
                   num_attention_heads=4, num_key_value_heads=2, head_dim=64),
    "ar_draft": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2,
                     num_attention_heads=2, num_key_value_heads=1, head_dim=64),
}


def make_config(arch: str, tokenizer, max_positions: int = 2048):
    from transformers import Qwen3Config
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    return Qwen3Config(vocab_size=len(tokenizer), max_position_embeddings=max_positions,
                       tie_word_embeddings=True, rope_theta=10000.0,
                       bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
                       pad_token_id=tokenizer.eos_token_id, **ARCHS[arch])


def token_stream(texts, tokenizer) -> torch.Tensor:
    """All texts tokenised, each followed by EOS, as one int32 tensor."""
    ids: List[int] = []
    for text in texts:
        ids.extend(tokenizer.encode(text, add_special_tokens=False))
        ids.append(tokenizer.eos_token_id)
    return torch.tensor(ids, dtype=torch.int32)


def batch_at(stream: torch.Tensor, step: int, batch: int, seq_len: int, seed: int):
    """The windows step ``step`` trains on: inputs and next-token labels [batch, seq_len]."""
    if stream.numel() < seq_len + 2:
        raise ValueError(f"the token stream ({stream.numel()}) is shorter than seq_len + 2")
    g = torch.Generator().manual_seed(seed * 1_000_003 + step)
    starts = torch.randint(0, stream.numel() - seq_len - 1, (batch,), generator=g)
    win = torch.stack([stream[s:s + seq_len + 1] for s in starts.tolist()]).long()
    return win[:, :-1], win[:, 1:]


def _lr(step: int, steps: int, lr: float, warmup: int, min_ratio: float) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, t))))


@torch.no_grad()
def eval_loss(model, stream: torch.Tensor, seq_len: int, max_windows: int = 32) -> float:
    """Mean next-token loss over consecutive windows of a held-out stream."""
    model.eval()
    total, count = 0.0, 0
    for start in range(0, stream.numel() - seq_len - 1, seq_len):
        if count >= max_windows:
            break
        win = stream[start:start + seq_len + 1].long()[None]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=win[:, :-1]).logits.float()
        total += torch.nn.functional.cross_entropy(logits[0], win[0, 1:]).item()
        count += 1
    model.train()
    return total / max(1, count)


def _save_state(path: str, model, opt, step: int) -> None:
    tmp = path + ".tmp"
    torch.save({"model": model.state_dict(), "optim": opt.state_dict(), "step": step}, tmp)
    os.replace(tmp, path)


def train_lm(arch: str, tokenizer_dir: str, out: str, steps: int, batch: int = 16,
             seq_len: int = 512, lr: float = 2e-3, warmup: int = 100, min_lr_ratio: float = 0.1,
             weight_decay: float = 0.1, save_every: int = 100, eval_every: int = 200,
             seed: int = 0, threads: Optional[int] = None, corpus=None) -> str:
    """Train (or resume) ``arch`` into ``out``; returns the final model's folder. ``corpus``:
    a :class:`~.corpus.Corpus` (default: this Python's standard library)."""
    from transformers import Qwen3ForCausalLM
    from .corpus import collect
    from .tokenizer import load_tokenizer
    if threads:
        torch.set_num_threads(threads)
    os.makedirs(out, exist_ok=True)
    tok = load_tokenizer(tokenizer_dir)
    corpus = corpus if corpus is not None else collect()
    cache = os.path.join(out, "tokens.pt")
    if os.path.isfile(cache):
        streams = torch.load(cache)
    else:
        streams = {"train": token_stream((corpus.read(r) for r in corpus.train), tok),
                   "heldout": token_stream((corpus.read(r) for r in corpus.heldout), tok),
                   "fingerprint": corpus.fingerprint()}
        torch.save(streams, cache)
    train, heldout = streams["train"], streams["heldout"]
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(make_config(arch, tok))
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=lr,
                            betas=(0.9, 0.95), eps=1e-8)
    state_path = os.path.join(out, "state.pt")
    step = 0
    if os.path.isfile(state_path):
        state = torch.load(state_path, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optim"])
        step = state["step"]
        print(f"resumed from {state_path} at step {step}", flush=True)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{arch}: {n_params / 1e6:.2f}M parameters, {train.numel()} training tokens, "
          f"{heldout.numel()} held-out tokens, {steps} steps of {batch}x{seq_len}", flush=True)
    log = open(os.path.join(out, "log.jsonl"), "a")
    model.train()
    t0, tokens = time.perf_counter(), 0
    while step < steps:
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, lr, warmup, min_lr_ratio)
        x, y = batch_at(train, step, batch, seq_len, seed)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            logits = model(input_ids=x).logits
        loss = torch.nn.functional.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        tokens += x.numel()
        rec = {"step": step, "loss": round(loss.item(), 4), "grad_norm": round(norm.item(), 3),
               "lr": opt.param_groups[0]["lr"]}
        if step % eval_every == 0 or step == steps:
            rec["heldout_loss"] = round(eval_loss(model, heldout, seq_len), 4)
        if step % 10 == 0 or "heldout_loss" in rec:
            rec["tok_per_s"] = round(tokens / (time.perf_counter() - t0))
            print(json.dumps(rec), flush=True)
        log.write(json.dumps(rec) + "\n")
        log.flush()
        if step % save_every == 0 or step == steps:
            _save_state(state_path, model, opt, step)
    final = os.path.join(out, "final")
    model.to(torch.bfloat16).save_pretrained(final, safe_serialization=True)
    tok.save_pretrained(final)
    with open(os.path.join(final, "training.json"), "w") as f:
        json.dump({"arch": arch, "steps": steps, "batch": batch, "seq_len": seq_len, "lr": lr,
                   "warmup": warmup, "seed": seed, "corpus": streams["fingerprint"],
                   "heldout_loss": eval_loss(model.float(), heldout, seq_len)}, f, indent=1)
    return final


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dspark_ext.bundled.lm",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--arch", required=True, choices=sorted(ARCHS))
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=512)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--save-every", type=int, default=100)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    final = train_lm(a.arch, a.tokenizer, a.out, a.steps, a.batch, a.seq_len, a.lr, a.warmup,
                     save_every=a.save_every, eval_every=a.eval_every, seed=a.seed,
                     threads=a.threads)
    print(f"saved {final}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
