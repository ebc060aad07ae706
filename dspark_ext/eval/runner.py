"""The evaluation run: plain autoregressive decoding of the target and speculative decoding
with the drafter over the same prompts, in the same process, then the paper's metrics.

1. baseline: the target alone, one token per forward (same Target adapter, same sampling
   streams), timed -> tokens/s;
2. fixed-length speculative decoding (every draft verified, so every position has labels)
   on two disjoint prompt splits: STS is fitted on the first ("fit") split's rounds and the
   calibration is reported on the second ("held-out"); tau, conditional acceptance, prefix
   survival and tokens/s over both;
3. when the chosen policy is a static threshold or the scheduler, a run with it (STS
   temperatures applied) over every prompt;
4. the static-threshold sweep (paper Fig. 5) on the held-out split;
5. an :class:`~dspark_ext.scheduler.SPSProfile` measured on the target and the recorded rounds
   for ``bench/serving_sim.py``.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

import torch

from ..decoding import FixedLength, Scheduled, SpeculativeDecoder, StaticThreshold, as_target
from ..decoding.inputs import per_row_seed, per_row_temperature, prompts_to_right_padded
from ..ops.sampling import sample_target
from ..scheduler import SPSProfile
from .metrics import calibration, decoding_metrics, merge_stats, recorded_rounds, speedup

__all__ = ["EvalConfig", "run_eval", "autoregressive", "measure_sps", "speculative", "split_prompts"]

SWEEP = (0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


@dataclass
class EvalConfig:
    temperature: float = 0.0
    gamma: Optional[int] = None          # drafts per round (default: the drafter's block)
    verify: Optional[str] = None         # None: greedy at T = 0, token-wise otherwise
    policy: str = "fixed"                # fixed | threshold | scheduled
    threshold: float = 0.5
    sweep: Sequence[float] = SWEEP       # () skips the threshold sweep
    max_new_tokens: int = 64
    batch_size: int = 8
    seed: int = 0
    calibration_fraction: float = 0.5
    eos_token_id: Union[None, int, Sequence[int]] = None
    baseline: bool = True
    sps_points: Optional[Sequence[int]] = None  # None: powers of two up to batch*(K+1); ()
    sps_repeats: int = 5

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _batches(prompts: Sequence[List[int]], size: int):
    for start in range(0, len(prompts), size):
        yield start, list(prompts[start:start + size])


@torch.no_grad()
def autoregressive(target, prompts: Sequence[List[int]], cfg: EvalConfig) -> Dict:
    """The target alone: prefill, then one token per forward. Returns {"tokens", "seconds",
    "tokens_per_s", "new_tokens": per prompt, cut after an EOS}."""
    target = as_target(target)
    dev = target.device
    total, seconds, new_tokens = 0, 0.0, []
    eos = None if cfg.eos_token_id is None else torch.tensor(
        [cfg.eos_token_id] if isinstance(cfg.eos_token_id, int) else list(cfg.eos_token_id),
        dtype=torch.int64, device=dev)
    for start, batch in _batches(prompts, cfg.batch_size):
        tokens, lengths, _ = prompts_to_right_padded(batch, None)
        tokens, lengths = tokens.to(dev), lengths.to(dev)
        b = tokens.shape[0]
        temp = per_row_temperature(cfg.temperature, b, dev)
        seeds = per_row_seed(cfg.seed + start, b, dev)
        _sync(dev)
        t0 = time.perf_counter()
        target.reset(b, None)
        step = target.prefill(tokens, lengths)
        done = torch.zeros(b, dtype=torch.bool, device=dev)
        count = torch.zeros(b, dtype=torch.int64, device=dev)
        one = torch.ones(b, dtype=torch.int64, device=dev)
        emitted = []
        for i in range(cfg.max_new_tokens):
            offset = torch.full((b,), i, dtype=torch.int64, device=dev)
            tok = sample_target(step.logits[:, -1].float(), temp, seeds, offset)
            emitted.append(tok)
            count += (~done).long()
            if eos is not None:
                done |= torch.isin(tok, eos)
                if bool(done.all()):
                    break
            if i + 1 < cfg.max_new_tokens:
                step = target.forward(tok[:, None], one)
        _sync(dev)
        seconds += time.perf_counter() - t0
        total += int(count.sum())
        rows = torch.stack(emitted, 1).cpu() if emitted else torch.zeros(b, 0, dtype=torch.int64)
        new_tokens.extend(r[:int(c)] for r, c in zip(rows.tolist(), count.tolist()))
    return {"tokens": total, "seconds": seconds,
            "tokens_per_s": total / seconds if seconds > 0 else None, "new_tokens": new_tokens}


def speculative(decoder: SpeculativeDecoder, prompts, cfg: EvalConfig, policy, verify,
                gamma) -> Dict:
    """Decode ``prompts`` in batches of ``cfg.batch_size`` with ``policy`` and the verification
    method ``verify``; returns {"metrics": decoding metrics with tokens/s, "stats": the merged
    per-round statistics}."""
    stats, total, seconds = [], 0, 0.0
    dev = decoder.target.device
    for start, batch in _batches(prompts, cfg.batch_size):
        _sync(dev)
        t0 = time.perf_counter()
        out = decoder.generate(batch, max_new_tokens=cfg.max_new_tokens,
                               temperature=cfg.temperature, seed=cfg.seed + start,
                               eos_token_id=cfg.eos_token_id, verify=verify, gamma=gamma,
                               length_policy=policy)
        _sync(dev)
        seconds += time.perf_counter() - t0
        total += int(out.num_new_tokens.sum())
        stats.append(out.stats)
    merged = merge_stats(stats)
    res = decoding_metrics(merged)
    res.update(tokens=total, seconds=seconds,
               tokens_per_s=total / seconds if seconds > 0 else None)
    return {"metrics": res, "stats": merged}


@torch.no_grad()
def measure_sps(target, points: Sequence[int], repeats: int = 5,
                context: int = 16) -> SPSProfile:
    """SPS(B): target forwards per second over B new tokens (one row after a ``context``-token
    prefix; the cache is truncated back after every call)."""
    target = as_target(target)
    dev = target.device
    vocab = target.vocab_size
    gen = torch.Generator().manual_seed(0)
    prefix = torch.randint(0, vocab, (1, context), generator=gen).to(dev)
    target.reset(1, None)
    target.prefill(prefix, torch.tensor([context], device=dev))
    base = target.lengths().clone()

    def forward(b: int) -> None:
        toks = torch.randint(0, vocab, (1, b), generator=gen).to(dev)
        target.forward(toks, torch.tensor([b], device=dev))
        target.truncate(base)

    sync = (lambda: torch.cuda.synchronize()) if dev.type == "cuda" else None
    return SPSProfile.measure(forward, points, warmup=1, repeats=repeats, sync=sync)


def split_prompts(prompts, fraction: float):
    """The calibration split: the first ``ceil(fraction * n)`` prompts to fit, the rest to
    score (at least one each; a single prompt is both)."""
    if len(prompts) < 2:  # one prompt: fit and report on the same rounds
        same = list(prompts)
        return same, same
    n_fit = min(len(prompts) - 1, max(1, int(math.ceil(fraction * len(prompts)))))
    return list(prompts[:n_fit]), list(prompts[n_fit:])


def run_eval(target, drafter, prompts: Sequence[List[int]], cfg: EvalConfig) -> Dict:
    """Every number of the report (see the module docstring); the recorded rounds and the SPS
    profile are returned under "rounds" (tensors) and "sps" (an SPSProfile)."""
    target = as_target(target)
    # drafts per round: as the decoder chooses them (the drafter's block, else 4)
    k = cfg.gamma or getattr(drafter, "max_draft", None) or 4
    decoder = SpeculativeDecoder(target, drafter, gamma=k)
    verify = cfg.verify or ("greedy" if cfg.temperature == 0 else "token")
    warm = [list(prompts[0])]
    decoder.generate(warm, max_new_tokens=min(4, cfg.max_new_tokens), temperature=cfg.temperature,
                     verify=verify, gamma=k)  # first-call overheads out of the timings
    out: Dict = {"config": dict(cfg.to_dict(), gamma=k, verify=verify),
                 "num_prompts": len(prompts), "draft_len": k}
    if cfg.baseline:
        autoregressive(target, warm, dataclasses.replace(cfg, max_new_tokens=4))
        base = autoregressive(target, prompts, cfg)
        out["baseline"] = {k: v for k, v in base.items() if k != "new_tokens"}
    base_tps = out.get("baseline", {}).get("tokens_per_s")

    fit_p, held_p = split_prompts(prompts, cfg.calibration_fraction)
    fixed = FixedLength(k)
    fit = speculative(decoder, fit_p, cfg, fixed, verify, k)
    held = fit if held_p is fit_p else speculative(decoder, held_p, cfg, fixed, verify, k)
    runs = [fit] if held is fit else [fit, held]
    stats = merge_stats([r["stats"] for r in runs])
    main = decoding_metrics(stats)
    main.update(tokens=sum(r["metrics"]["tokens"] for r in runs),
                seconds=sum(r["metrics"]["seconds"] for r in runs), policy="fixed")
    main["tokens_per_s"] = main["tokens"] / main["seconds"] if main["seconds"] > 0 else None
    main["speedup"] = speedup(main["tokens_per_s"], base_tps)
    out["fixed"] = main
    out["calibration_split"] = {"fit_prompts": len(fit_p), "held_out_prompts": len(held_p)}
    calib = calibration(fit["stats"], held["stats"])
    out["calibration"] = calib
    temps = calib["temperatures"] if calib is not None else None

    sps = None
    points = cfg.sps_points
    if points is None:
        top = cfg.batch_size * (k + 1)
        points = sorted({min(top, 2 ** i) for i in range(int(math.log2(max(top, 1))) + 2)})
    if points:
        sps = measure_sps(target, points, cfg.sps_repeats)
    out["sps"] = sps
    if cfg.policy != "fixed":
        if cfg.policy == "threshold":
            policy = StaticThreshold(cfg.threshold, temps)
        elif cfg.policy == "scheduled":
            if sps is None:
                raise ValueError("policy 'scheduled' needs an SPS profile (sps_points)")
            policy = Scheduled(sps, temps)
        else:
            raise ValueError(f"policy must be fixed, threshold or scheduled, got {cfg.policy!r}")
        run = speculative(decoder, prompts, cfg, policy, verify, k)["metrics"]
        run.update(policy=cfg.policy, speedup=speedup(run["tokens_per_s"], base_tps))
        out["policy_run"] = run
    sweep = []
    if calib is not None:
        for th in cfg.sweep:
            r = speculative(decoder, held_p, cfg, StaticThreshold(th, temps), verify,
                             k)["metrics"]
            sweep.append({"threshold": th, "tokens_per_round": r["tokens_per_round"],
                          "acceptance_rate": r["acceptance_rate"],
                          "mean_verified": r["mean_verified"], "tokens_per_s": r["tokens_per_s"],
                          "speedup": speedup(r["tokens_per_s"], base_tps)})
    out["threshold_sweep"] = sweep
    out["rounds"] = recorded_rounds(stats, temps)
    return out
