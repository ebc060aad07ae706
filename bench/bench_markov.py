#!/usr/bin/env python
"""Benchmark of dspark_ext.markov_sample (Markov-head drafting, design §4) in one command.

    python bench/bench_markov.py [--device cpu|cuda] [--quick | --smoke] [--out DIR]
                                 [--no-reference] [--dtype fp32,bf16]

For every case (B x K x V, r = 256, vanilla head, T = 1) it times in the same run, on the
same inputs (median after warm-up, harness.time_fn):

* ``native``  the fused op;
* ``eager``   the eager PyTorch loop reference code runs (per step: W1 gather, [B, r] x [r, V]
              product, add, log-softmax, softmax and multinomial) -> ``x_eager``;
* ``ref``     the float64 readable reference (dspark_ext.reference_markov) -> ``x_ref``
              (small shapes and the headline shape only);
* ``gemm``    the K [B, r] x [r, V] products alone (torch.mm): the part no fusion removes.

Bytes the op must move (design §10): W2 once per step (K V r w), base logits once and z once
(2 B K V s), plus tokens / lse; GB/s is reported against the measured copy bandwidth. Also
reports the cost of going from K = 4 to K = 16 (the paper: the sequential stage should add
little to a round). Writes ``markov_results.json`` and ``markov_bandwidth.{png,svg}`` to
``--out`` (default bench/out).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import dspark_ext  # noqa: E402
from dspark_ext import reference_markov  # noqa: E402

import harness  # noqa: E402  (timing, copy bandwidth, machine info, targets, plot)

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
HEADLINE = dict(B=32, K=7, V=32000, dtype="fp32")
RANK = 256


# The bundled drafter's shape (K = 7, V = 4096, r = 128) at the batches a decoder runs one
# request or a few at: the small-batch executor (B <= 4) and the batched one (B = 8) side by
# side, next to their own bias GEMMs.
SMALL_BATCH = [(b, 7, 4096, dt, 128) for dt in ("fp32", "bf16") for b in (1, 2, 4, 8)]


def grid(mode: str, dtypes: List[str]):
    """(B, K, V, dtype, r) cases."""
    if mode == "full":
        return [(b, k, v, dt, RANK) for dt in dtypes for v in (32000, 151936)
                for k in (4, 7, 16) for b in (1, 8, 32, 128)] + SMALL_BATCH
    if mode == "quick":
        return [(b, k, 32000, dt, RANK) for dt in dtypes for k in (4, 7, 16) for b in (1, 32)] \
            + [(8, 7, 151936, dtypes[0], RANK)] + SMALL_BATCH
    if mode == "smoke":
        return [(2, 4, 4096, "fp32", RANK), (2, 16, 4096, "fp32", RANK),
                (1, 7, 4096, "bf16", 128), (8, 7, 4096, "bf16", 128)]
    raise ValueError(mode)


BUDGETS = {
    "full": harness.Budget((2, 20, 2.0), (1, 5, 4.0), (0, 1, 20.0), (2, 15, 1.5)),
    "quick": harness.Budget((1, 10, 0.8), (1, 3, 1.5), (0, 1, 20.0), (2, 9, 0.5)),
    "smoke": harness.Budget((1, 3, 0.2), (1, 3, 0.2), (0, 1, 1.0), (1, 3, 0.1), min_reps=2,
                       large_copy_bytes=64 << 20),
}


def make_inputs(B, K, V, dtype, device, seed=0, rank=RANK):
    g = torch.Generator(device="cpu").manual_seed(seed)
    base = (torch.randn(B, K, V, generator=g) * 2.0).to(dtype).to(device)
    w1 = (torch.randn(V, rank, generator=g) * 0.5).to(dtype).to(device)
    w2 = (torch.randn(V, rank, generator=g) * (2.0 / rank ** 0.5)).to(dtype).to(device)
    anchor = torch.randint(0, V, (B,), generator=g).to(device)
    temp = torch.ones(B, dtype=torch.float32, device=device)
    seeds = (torch.arange(B, dtype=torch.int64) * 7919 + 1 + seed).to(device)
    offset = torch.full((B,), 42, dtype=torch.int64, device=device)
    return dict(base=base, w1=w1, w2=w2, anchor=anchor, temp=temp, seed=seeds, offset=offset)


def eager_loop(base, anchor, w1, w2, temp):
    """What reference drafting code does: K full-vocabulary adds, softmaxes, multinomials."""
    B, K, V = base.shape
    x = anchor
    tokens, logits, lses = [], [], []
    t = temp.view(B, 1)
    for k in range(K):
        bias = w1[x].float() @ w2.float().t()
        z = (base[:, k].float() + bias).to(base.dtype)
        zs = z.float() / t
        lses.append(torch.logsumexp(zs, dim=-1))
        x = torch.multinomial(torch.softmax(zs, dim=-1), 1).squeeze(1)
        tokens.append(x)
        logits.append(z)
    return torch.stack(tokens, 1), torch.stack(logits, 1), torch.stack(lses, 1)


def bytes_moved(B, K, V, s_item, w_item, rank=RANK):
    read = K * V * rank * w_item + B * K * V * s_item + B * (8 + 4 + 8 + 8)
    written = B * K * V * s_item + B * K * (8 + 4)
    return {"read": read, "written": written, "total": read + written}


def run_case(B, K, V, dt, rank, args, device, budget, copybw, large_copy):
    x = make_inputs(B, K, V, DTYPES[dt], device, args.seed, rank)
    r = {"B": B, "K": K, "V": V, "dtype": dt, "op": "markov", "r": rank}

    def native():
        return dspark_ext.markov_sample(x["base"], x["anchor"], x["w1"], x["w2"], x["temp"],
                                        x["seed"], x["offset"])

    w, reps, secs = budget.native
    r["native_s"], times = harness.time_fn(native, device, w, reps, secs, budget.min_reps)
    r["native_min_s"] = min(times)
    r["native_per_step_s"] = r["native_s"] / K
    nb = bytes_moved(B, K, V, x["base"].element_size(), x["w2"].element_size(), rank)
    r["bytes"] = nb
    r["GBps"] = nb["total"] / r["native_s"] / 1e9
    same = copybw.measure(x["base"].numel() * x["base"].element_size() + x["w2"].numel()
                          * x["w2"].element_size())
    r["copy_same_GBps"], r["copy_large_GBps"] = same["GBps"], large_copy["GBps"]
    r["frac_copy_same"] = r["GBps"] / same["GBps"]
    u = torch.randn(B, rank, device=device, dtype=torch.float32)
    w2f = x["w2"].float()
    gemm = lambda: [u @ w2f.t() for _ in range(K)]  # noqa: E731
    r["gemm_s"], _ = harness.time_fn(gemm, device, w, reps, secs, budget.min_reps)
    r["gemm_share"] = r["gemm_s"] / r["native_s"]
    avail = harness.mem_available() if device.type == "cpu" else None
    if avail is None or 6 * 4 * B * K * V < 0.5 * avail:
        eg = lambda: eager_loop(x["base"], x["anchor"], x["w1"], x["w2"], x["temp"])  # noqa
        w, reps, secs = budget.eager
        r["eager_s"], et = harness.time_fn(eg, device, w, reps, secs, budget.min_reps)
        r["x_eager"] = r["eager_s"] / r["native_s"]
        r["x_eager_best"] = min(et) / r["native_min_s"]
    small = (B <= 8 and V <= 32000) or (B, K, V, dt) == tuple(HEADLINE.values())
    if args.mode == "smoke":
        small = K == 4
    if args.reference and small:
        rf = lambda: reference_markov.markov_sample(  # noqa: E731
            x["base"], x["anchor"], x["w1"], x["w2"], x["temp"], x["seed"], x["offset"])
        w, reps, secs = budget.ref
        r["ref_s"], _ = harness.time_fn(rf, device, w, reps, secs, 1)
        r["x_ref"] = r["ref_s"] / r["native_s"]
    return r


def k_scaling(cases):
    """Native time at K = 16 over K = 4 (same B, V, dtype)."""
    out = []
    by = {(c["B"], c["K"], c["V"], c["dtype"]): c for c in cases}
    for (B, K, V, dt), c in by.items():
        if K == 4 and (B, 16, V, dt) in by:
            c16 = by[(B, 16, V, dt)]
            out.append({"B": B, "V": V, "dtype": dt, "K4_s": c["native_s"],
                        "K16_s": c16["native_s"], "ratio": c16["native_s"] / c["native_s"],
                        "added_s": c16["native_s"] - c["native_s"]})
    return out


def targets(cases, device):
    out = []
    need = 2.0 if device.type == "cpu" else 3.0
    for c in cases:
        if all(c[k] == v for k, v in HEADLINE.items()):
            for key in ("x_eager", "x_ref"):
                val = c.get(key)
                out.append({"target": f"markov_sample >= {need:.0f}x {key[2:]} [B=32 K=7 "
                                      f"V=32000 fp32]", "value": val, "need": need,
                            "pass": None if val is None else bool(val >= need)})
    return out


def fmt(c):
    ms = lambda k: "-" if k not in c else f"{c[k] * 1e3:9.2f}"  # noqa: E731
    xs = lambda k: "-" if k not in c else f"{c[k]:6.1f}x"  # noqa: E731
    return (f"B={c['B']:<4d} K={c['K']:<3d} V={c['V']:<7d} r={c['r']:<4d} {c['dtype']:<5s} native {ms('native_s')}"
            f" ms  gemm {ms('gemm_s')} ms ({100 * c['gemm_share']:3.0f}%)  eager "
            f"{ms('eager_s')} ms {xs('x_eager')}  ref {ms('ref_s')} ms {xs('x_ref')}  "
            f"{c['GBps']:7.2f} GB/s ({100 * c['frac_copy_same']:3.0f}% copy)")


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None)
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke")
    p.add_argument("--out", default=os.path.join(HERE, "out"))
    p.add_argument("--dtype", default="fp32", help="comma list of fp32,bf16")
    p.add_argument("--no-reference", dest="reference", action="store_false")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(mode="full")
    args = p.parse_args(argv)
    device = harness.pick_device(args.device, args.threads)
    args.device = device.type
    budget = BUDGETS[args.mode]
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    info = harness.machine_info(device)
    copybw = harness.CopyBandwidth(device, budget)
    large_copy = copybw.measure(budget.large_copy_bytes)
    print(f"markov_sample | {info.get('gpu', info.get('cpu_model', ''))} | threads "
          f"{torch.get_num_threads()} | mode {args.mode} | copy {large_copy['GBps']:.1f} GB/s")
    cases = []
    for (B, K, V, dt, rank) in grid(args.mode, args.dtype.split(",")):
        c = run_case(B, K, V, dt, rank, args, device, budget, copybw, large_copy)
        print(fmt(c), flush=True)
        cases.append(c)
    ks = k_scaling(cases)
    for s in ks:
        print(f"K 4 -> 16 [B={s['B']} V={s['V']} {s['dtype']}]: {s['K4_s'] * 1e3:.2f} -> "
              f"{s['K16_s'] * 1e3:.2f} ms (x{s['ratio']:.2f}, +{s['added_s'] * 1e3:.2f} ms)")
    tg = targets(cases, device)
    harness.print_targets(tg)
    results = {"machine": info, "mode": args.mode, "args": vars(args), "rank": RANK,
               "copy_bandwidth": {"large": large_copy}, "cases": cases, "k_scaling": ks,
               "targets": tg, "elapsed_s": time.perf_counter() - t0,
               "loadavg_end": harness.loadavg()}
    path = harness.write_json(results, os.path.join(args.out, "markov_results.json"))
    print(f"wrote {path}")
    title = f"dspark_ext markov_sample, {args.device}, mode {args.mode} (r = {RANK} unless shown)"
    made = harness.plot_bandwidth(cases, large_copy, os.path.join(args.out, "markov_bandwidth"),
                                  title)
    print(f"wrote {made}")
    return results


if __name__ == "__main__":
    main()
