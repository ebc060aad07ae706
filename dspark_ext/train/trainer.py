"""The training loop: online target -> teacher-forced drafter step -> the three losses.

One global step reads ``G = micro_batch * grad_accum * world_size`` sequences
(:class:`~dspark_ext.train.data.DataOrder`); rank r takes its contiguous slice and splits it
into ``grad_accum`` micro-batches. Before any forward, the step's loss denominator (the sum of
position weights over every supervised slot of the global batch) is computed from the anchors
and all-reduced, so accumulation and data parallelism give the gradient of exactly the
objective one process computes over the whole batch.

Per micro-batch: the frozen target runs once (no grad) for the features of every position and
its last hidden state; the drafter's training forward runs all anchor blocks in one pass; the
target's LM head is applied at the N*K supervised slots only; losses (design §7) backward. Then
gradient clipping, AdamW, the warm-up + cosine schedule. bf16 autocast where the device has it
(``precision="auto"``: CUDA with bf16), float32 master weights always.

Each step logs the loss parts, mean c*, the tau estimate, tokens/s and the time split between
the target's forward, the drafter's forward/backward and the optimizer (a progress line on
stderr, and a JSONL record every ``log_every`` steps in ``<out_dir>/train_log.jsonl``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

import torch
from torch import Tensor

from ..drafters.dspark import block_targets
from .anchors import sample_anchors
from .checkpoint import load_checkpoint, save_checkpoint
from .data import DataOrder, Example, collate
from .distributed import DistInfo, all_reduce_sum, wrap_model
from .losses import LossConfig, combine, loss_terms, position_weights
from .online_target import OnlineTarget, cache_bytes
from .optim import build_optimizer, warmup_cosine

__all__ = ["TrainConfig", "Trainer", "MicroBatch"]


class MicroBatch(NamedTuple):
    input_ids: Tensor     # int64 [b, S] right-padded (device)
    loss_mask: Tensor     # float32 [b, S] (device)
    anchors: Tensor       # int64 [b, N] (device)
    block_keep: Tensor    # bool [b, N] (device)
    tokens: int           # real (unpadded) tokens
    indices: List[int]    # the examples' indices (a cached target reads by them)
    label_mask: Tensor    # bool [b, N, K] on the CPU: the loss denominator, before forwards


@dataclass
class TrainConfig:
    out_dir: str = "dspark_train"
    steps: Optional[int] = None          # global optimizer steps (None: from epochs)
    epochs: float = 1.0
    micro_batch: int = 1                 # sequences per micro-batch per process
    grad_accum: int = 1
    lr: float = 6e-4                     # DeepSpec's Qwen3 recipe
    warmup_ratio: float = 0.04
    min_lr_ratio: float = 0.0
    weight_decay: float = 0.0
    betas: Tuple[float, float] = (0.9, 0.95)
    max_grad_norm: Optional[float] = 1.0
    num_anchors: Optional[int] = None    # None: the drafter config's num_anchors
    seed: int = 0
    precision: str = "auto"              # auto | fp32 | bf16
    loss: LossConfig = field(default_factory=LossConfig)
    log_every: int = 10
    save_every: int = 0                  # global steps between checkpoints (0: only at the end)
    save_final: bool = True
    strategy: str = "ddp"                # ddp | fsdp | none (under torchrun)
    progress: bool = True
    pad_id: int = 0
    profile: bool = False                # synchronise CUDA at phase edges (exact time split)
    live_estimates: bool = True          # target logits for mean c* / tau even when no loss
                                         # needs them (DFlash); False saves that LM head

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _autocast(device: torch.device, precision: str):
    if precision not in ("auto", "fp32", "bf16"):
        raise ValueError(f"precision must be auto, fp32 or bf16, got {precision!r}")
    if precision == "auto":
        ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16" if ok else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext, "fp32"
    return (lambda: torch.autocast(device.type, dtype=torch.bfloat16)), "bf16"


class Trainer:
    """Trains ``drafter`` (a DSparkDrafter with float32 weights, embedding and LM head copied
    from the target and frozen) against ``target`` (an :class:`OnlineTarget`) on
    ``examples``."""

    def __init__(self, target: OnlineTarget, drafter, examples: Sequence[Example],
                 config: TrainConfig, info: Optional[DistInfo] = None):
        self.target, self.drafter, self.examples, self.cfg = target, drafter, examples, config
        self.info = info or DistInfo(device=drafter.device)
        per_rank = config.micro_batch * config.grad_accum
        self.global_batch = per_rank * self.info.world_size
        self.order = DataOrder(len(examples), self.global_batch, config.seed)
        self.total_steps = config.steps if config.steps is not None else max(
            1, math.ceil(config.epochs * len(examples) / self.global_batch))
        self.num_anchors = config.num_anchors or drafter.config.num_anchors
        self.block = drafter.config.block_size
        has_conf = drafter.confidence_head is not None
        self.use_target_logits = (config.loss.needs_target_logits or has_conf
                                  or config.live_estimates)
        unused = has_conf and config.loss.confidence_weight == 0
        self.model = wrap_model(drafter, self.info, config.strategy, find_unused_parameters=unused)
        self.optimizer = build_optimizer(drafter, config.lr, config.weight_decay, config.betas)
        warm = int(round(config.warmup_ratio * self.total_steps))
        self.scheduler = warmup_cosine(self.optimizer, self.total_steps, warm, config.min_lr_ratio)
        self.autocast, self.precision = _autocast(self.info.device, config.precision)
        self.step = 0
        self.history: List[Dict] = []
        self._trainable = [p for p in drafter.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ state
    def resume(self, path: str) -> int:
        self.step = load_checkpoint(path, self.drafter, self.optimizer, self.scheduler,
                                    self.info)
        return self.step

    def save(self) -> str:
        return save_checkpoint(self.cfg.out_dir, self.step, self.drafter, self.optimizer,
                               self.scheduler, self.info, self.cfg.to_dict())

    # ------------------------------------------------------------------ data
    def _micro_batches(self, step: int) -> List[MicroBatch]:
        """This rank's micro-batches of global step ``step``."""
        slots = self.order.slots(step)
        per_rank = self.cfg.micro_batch * self.cfg.grad_accum
        mine = slots[self.info.rank * per_rank:(self.info.rank + 1) * per_rank]
        dev = self.info.device
        out = []
        for m in range(self.cfg.grad_accum):
            part = mine[m * self.cfg.micro_batch:(m + 1) * self.cfg.micro_batch]
            ids, mask = collate([self.examples[i] for _, i in part], self.cfg.pad_id)
            seeds = [self.order.anchor_seed(e, i) for e, i in part]
            anchors, keep = sample_anchors(mask, self.num_anchors, seeds)
            _, label_mask, _ = block_targets(ids, anchors, keep, self.block, mask)
            ntok = sum(len(self.examples[i].input_ids) for _, i in part)
            out.append(MicroBatch(ids.to(dev), mask.to(dev), anchors.to(dev), keep.to(dev),
                                  ntok, [i for _, i in part], label_mask))
        return out

    # ------------------------------------------------------------------ one step
    def _sync(self) -> None:
        if self.cfg.profile and self.info.device.type == "cuda":
            torch.cuda.synchronize()

    def train_step(self) -> Dict:
        cfg, info = self.cfg, self.info
        t_start = time.perf_counter()
        batches = self._micro_batches(self.step)
        w = position_weights(self.block, cfg.loss.decay_gamma)
        local_den = sum((mb.label_mask.float() * w).sum() for mb in batches)
        den = all_reduce_sum(torch.as_tensor(local_den, dtype=torch.float32).to(info.device))
        sums = torch.zeros(8, dtype=torch.float64, device=info.device)
        times = {"target": 0.0, "drafter": 0.0, "optimizer": 0.0}
        for m, mb in enumerate(batches):
            ids, anchors, last = mb.input_ids, mb.anchors, m == len(batches) - 1
            t0 = time.perf_counter()
            with self.autocast():
                tgt = self.target(ids, indices=mb.indices)
                t_logits = None
                if self.use_target_logits:
                    pos = anchors[:, :, None] + torch.arange(self.block, device=ids.device)
                    t_logits = self.target.logits_at(tgt.last_hidden, pos)
            self._sync()
            t1 = time.perf_counter()
            sync = contextlib.nullcontext() if last or not hasattr(self.model, "no_sync") \
                else self.model.no_sync()
            with sync:
                with self.autocast():
                    out = self.model(tgt.features, ids, anchors, mb.block_keep, mb.loss_mask)
                terms = loss_terms(out.draft_logits, out.target_ids, out.label_mask, cfg.loss,
                                   t_logits, out.confidence_logits)
                parts = combine(terms, cfg.loss, den, scale=float(info.world_size))
                parts["loss"].backward()
            self._sync()
            times["target"] += t1 - t0
            times["drafter"] += time.perf_counter() - t1
            st, zero = terms.stats, den.new_zeros(())
            sums += torch.stack([terms.ce.detach(), terms.l1.detach(),
                                 terms.confidence.detach(), st.get("c_star", zero),
                                 st["slots"], st.get("tau", zero), st["blocks"],
                                 zero + mb.tokens]).double()
        t2 = time.perf_counter()
        grad_norm = None
        if cfg.max_grad_norm:
            norm = torch.nn.utils.clip_grad_norm_(self._trainable, cfg.max_grad_norm)
            grad_norm = float(norm.full_tensor() if hasattr(norm, "full_tensor") else norm)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self._sync()
        times["optimizer"] = time.perf_counter() - t2
        self.step += 1
        sums = all_reduce_sum(sums).tolist()
        d = max(float(den), 1e-6)
        elapsed = time.perf_counter() - t_start
        rec = {
            "step": self.step, "epoch": round(self.order.epoch_of(self.step), 4), "lr": lr,
            "loss": (cfg.loss.ce_weight * sums[0] + cfg.loss.l1_weight * sums[1]
                     + cfg.loss.confidence_weight * sums[2]) / d,
            "ce": sums[0] / d, "l1": sums[1] / d, "confidence": sums[2] / d,
            "c_star_mean": sums[3] / sums[4] if sums[4] and self.use_target_logits else None,
            "tau_estimate": sums[5] / sums[6] if sums[6] and self.use_target_logits else None,
            "supervised_slots": int(sums[4]), "tokens": int(sums[7]),
            "tokens_per_s": sums[7] / elapsed if elapsed > 0 else None,
            "grad_norm": grad_norm, "step_s": elapsed,
            "time_target_s": times["target"], "time_drafter_s": times["drafter"],
            "time_optimizer_s": times["optimizer"],
        }
        return rec

    # ------------------------------------------------------------------ loop
    def train(self, steps: Optional[int] = None) -> List[Dict]:
        """Run until ``total_steps`` (or ``steps`` more); checkpoints every ``save_every``
        and at the end. Returns the per-step records of this call."""
        cfg, info = self.cfg, self.info
        end = self.total_steps if steps is None else min(self.total_steps, self.step + steps)
        if info.is_main:
            os.makedirs(cfg.out_dir, exist_ok=True)
            if self.step == 0 and cfg.progress:
                self._announce()
        log_path = os.path.join(cfg.out_dir, "train_log.jsonl")
        records = []
        while self.step < end:
            rec = self.train_step()
            records.append(rec)
            self.history.append(rec)
            if info.is_main:
                if cfg.progress:
                    self._progress(rec)
                if rec["step"] % cfg.log_every == 0 or rec["step"] == end:
                    with open(log_path, "a") as f:
                        f.write(json.dumps(rec) + "\n")
            if cfg.save_every and self.step % cfg.save_every == 0 and self.step < end:
                self.save()
        if cfg.save_final and records:
            self.save()
        if info.is_main and cfg.progress:
            sys.stderr.write("\n")
        return records

    def _announce(self) -> None:
        # A cache holds every example once, however many epochs read it.
        tokens = sum(len(e.input_ids) for e in self.examples)
        size = cache_bytes(tokens, len(self.target.layers), self.target.config.hidden_size)
        source = (f"online target: a bf16 hidden-state cache of this run would need "
                  f"{size / 1e9:.3f} GB" if isinstance(self.target, OnlineTarget)
                  else "target hidden states read from the on-disk cache")
        sys.stderr.write(f"training {self.total_steps} steps x {self.global_batch} sequences "
                         f"({self.info.world_size} process(es), {self.precision}); {source}\n")

    def _progress(self, rec: Dict) -> None:
        def f(v, spec):
            return "-" if v is None else format(v, spec)
        line = (f"step {rec['step']}/{self.total_steps} loss {rec['loss']:.4f} "
                f"(ce {rec['ce']:.3f} l1 {rec['l1']:.3f} conf {rec['confidence']:.3f}) "
                f"c* {f(rec['c_star_mean'], '.3f')} tau~{f(rec['tau_estimate'], '.2f')} "
                f"{f(rec['tokens_per_s'], '.0f')} tok/s lr {rec['lr']:.2e}")
        end = "\r" if sys.stderr.isatty() else "\n"
        if end == "\n" and rec["step"] % self.cfg.log_every and rec["step"] != self.total_steps:
            return
        sys.stderr.write(line.ljust(100) + end)
        sys.stderr.flush()
