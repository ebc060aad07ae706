#!/usr/bin/env python
"""Benchmark of dspark_ext's verification ops against eager PyTorch, in one command.

    python bench/bench_verify.py [--device cpu|cuda] [--quick | --smoke | --summary]
                                 [--out DIR] [--compile-baseline] [--no-reference]

For every case (op x B x K x V x dtype) it times, in the same run and on the same inputs:

* ``native``   the dspark_ext op (verify_greedy, rejection_sample token / block);
* ``eager``    a vectorised eager-PyTorch implementation of the same op
               (bench/eager_baselines.py, what HF/vLLM-style code does) -> speedup ``x_eager``;
* ``ref``      the float64 pure-PyTorch reference (dspark_ext.reference, a Python loop over
               rows; small shapes only) -> ``x_ref``;
* ``compiled`` torch.compile of the eager baseline (``--compile-baseline``) -> ``x_comp``;

and reports achieved GB/s over the fewest bytes the op must move (design §10, counted from the
op's own outputs, see bench/README.md) against the measured copy bandwidth (``dst.copy_(src)``
on a buffer as large as the op's inputs, and on a large buffer). Writes ``results.json`` and
``verify_bandwidth.png`` (``.svg`` without matplotlib) to ``--out`` (default bench/out),
prints a table and a pass/fail section for the issue's performance targets.

This file is the verification benchmark only (its grid, inputs, byte counts, cases, table,
targets and plot); the timing, copy bandwidth, machine info, target printing and bandwidth
plot it shares with the other bench scripts live in bench/harness.py.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Tuple

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(1, ROOT)

import dspark_ext  # noqa: E402
from dspark_ext import reference as ref_impl  # noqa: E402

import eager_baselines as eager  # noqa: E402
from harness import (GIB, Budget, CopyBandwidth, loadavg, machine_info,  # noqa: E402
                     mem_available, pick_device, plot_bandwidth, print_targets, sync,
                     time_fn, write_json)

OPS = ("greedy", "token", "block")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
HEADLINE = dict(B=32, K=7, V=32000, dtype="fp32")  # the CPU target shape (T=1)

# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


def grid(mode: str, device: str = "cpu") -> List[Tuple[int, int, int, str]]:
    """(B, K, V, dtype) shapes of a mode; every op runs on each."""
    if mode == "full":
        return [(b, k, v, dt) for v in (32000, 151936) for dt in ("fp32", "bf16")
                for k in (4, 7, 16) for b in (1, 8, 32, 128)]
    if mode == "quick":
        shapes = [(b, 7, 32000, dt) for dt in ("fp32", "bf16") for b in (1, 8, 32)]
        shapes += [(8, 4, 32000, "fp32"), (8, 16, 32000, "fp32"),
                   (8, 7, 151936, "fp32"), (32, 7, 151936, "bf16")]
        if device == "cuda":  # the GPU target shapes (B >= 32, V = 151936)
            shapes += [(32, 7, 151936, "fp32"), (128, 7, 151936, "fp32"),
                       (128, 7, 151936, "bf16"), (128, 16, 151936, "bf16")]
        return shapes
    if mode == "summary":
        return [(32, 7, 32000, "fp32"), (8, 7, 32000, "fp32"), (32, 7, 151936, "bf16")]
    if mode == "smoke":
        return [(1, 4, 4096, "fp32"), (4, 4, 4096, "bf16")]
    raise ValueError(mode)


BUDGETS = {
    "full": Budget((3, 30, 2.0), (1, 10, 4.0), (0, 3, 10.0), (2, 15, 1.5)),
    "quick": Budget((2, 15, 0.6), (1, 5, 1.5), (0, 1, 4.0), (2, 9, 0.5)),
    "summary": Budget((2, 15, 0.6), (1, 5, 1.5), (0, 1, 4.0), (2, 9, 0.5)),
    "smoke": Budget((1, 3, 0.2), (1, 3, 0.2), (0, 1, 1.0), (1, 3, 0.1), min_reps=2,
                    large_copy_bytes=64 << 20),
}

# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

SIGMA = 2.0  # spread of the background logits
DRAFT_NOISE = 0.5  # draft logits = target logits + N(0, DRAFT_NOISE^2) ...
DISAGREE = 0.2  # ... and with this probability per position the drafter's favourite differs


@dataclass
class Inputs:
    target: torch.Tensor  # [B, K+1, V] dtype
    draft: torch.Tensor  # [B, K, V] dtype
    tokens_sampled: torch.Tensor  # [B, K] drawn from softmax(draft) (T = 1)
    tokens_greedy: torch.Tensor  # [B, K] argmax(draft)
    temperature: torch.Tensor  # float32 [B] (ones)
    seed: torch.Tensor  # int64 [B]
    offset: torch.Tensor  # int64 [B]


def make_inputs(B: int, K: int, V: int, dtype: torch.dtype, device: torch.device,
                seed: int = 0) -> Inputs:
    """Realistic logits: a peaked target (top token boosted to probability ~0.3-0.9 on a
    N(0, SIGMA^2) background), a drafter that sees the target plus noise and, at a fraction
    of positions, favours another token; so acceptance is partial, as in serving. Built one
    request at a time to bound peak memory."""
    gen = torch.Generator(device=device).manual_seed(seed)
    target = torch.empty(B, K + 1, V, dtype=dtype, device=device)
    draft = torch.empty(B, K, V, dtype=dtype, device=device)
    tok_s = torch.empty(B, K, dtype=torch.int64, device=device)
    tok_g = torch.empty(B, K, dtype=torch.int64, device=device)
    log_bg = math.log(V) + SIGMA * SIGMA / 2  # log of the background's total mass
    for b in range(B):
        t = torch.randn(K + 1, V, generator=gen, device=device) * SIGMA
        hot = torch.randint(0, V, (K + 1, 1), generator=gen, device=device)
        boost = log_bg + torch.empty(K + 1, 1, device=device).uniform_(-1.0, 2.5, generator=gen)
        t.scatter_add_(1, hot, boost)
        d = t[:K] + torch.randn(K, V, generator=gen, device=device) * DRAFT_NOISE
        flip = (torch.rand(K, 1, generator=gen, device=device) < DISAGREE).float() * boost[:K]
        other = torch.randint(0, V, (K, 1), generator=gen, device=device)
        d.scatter_add_(1, hot[:K], -flip)
        d.scatter_add_(1, other, flip)
        target[b] = t.to(dtype)
        draft[b] = d.to(dtype)
        dq = draft[b].float()  # the drafter samples from the logits it hands over
        u = torch.rand(K, V, generator=gen, device=device).clamp_(min=1e-20)
        tok_s[b] = torch.argmax(dq - torch.log(-torch.log(u)), dim=-1)  # Gumbel-max, T = 1
        tok_g[b] = torch.argmax(dq, dim=-1)
    temperature = torch.ones(B, dtype=torch.float32, device=device)
    seeds = torch.arange(B, dtype=torch.int64, device=device) * 7919 + 12345 + seed
    offsets = torch.randint(0, 1 << 20, (B,), generator=gen, device=device)
    return Inputs(target, draft, tok_s, tok_g, temperature, seeds, offsets)


# --------------------------------------------------------------------------------------------
# Bytes an op must move (design §10)
# --------------------------------------------------------------------------------------------


def bytes_moved(op: str, accepted: torch.Tensor, B: int, K: int, V: int, itemsize: int
                ) -> Dict[str, int]:
    """Fewest bytes the op must read (each needed input row once) and write, from its outputs.

    token:  target and draft rows 0..min(a, K-1) (the rows whose p(x), q(x) are needed; the
            row of the first rejection is also the residual row), plus target row K (bonus)
            when all K drafts were accepted;
    greedy: target rows 0..a (the row after the accepted prefix gives the correction/bonus);
    block:  every target row 0..K and draft row 0..K-1 (the scan must visit every position).
    Plus the small inputs (draft tokens; temperature, seed, offset for sampled ops) and every
    output (out_tokens, accepted, num_emitted, accept_flags) written once.
    """
    acc = accepted.detach().cpu().to(torch.int64)
    if op == "greedy":
        t_rows = int((acc + 1).sum())
        d_rows = 0
    elif op == "token":
        t_rows = int((torch.clamp(acc, max=K - 1) + 1).sum() + (acc == K).sum())
        d_rows = int((torch.clamp(acc, max=K - 1) + 1).sum())
    elif op == "block":
        t_rows = B * (K + 1)
        d_rows = B * K
    else:
        raise ValueError(op)
    row = V * itemsize
    small = B * K * 8 + (0 if op == "greedy" else B * (4 + 8 + 8))
    written = B * (K + 1) * 8 + 2 * B * 8 + B * K
    read = (t_rows + d_rows) * row + small
    return {"read": read, "written": written, "total": read + written,
            "target_rows": t_rows, "draft_rows": d_rows}


# --------------------------------------------------------------------------------------------
# Ops
# --------------------------------------------------------------------------------------------


def native_fn(op: str, x: Inputs) -> Callable[[], tuple]:
    if op == "greedy":
        return lambda: dspark_ext.verify_greedy(x.target, x.tokens_greedy)
    return lambda: dspark_ext.rejection_sample(
        x.target, x.tokens_sampled, x.draft, x.temperature, x.seed, x.offset, method=op)


def eager_callable(op: str):
    return {"greedy": eager.verify_greedy_eager, "token": eager.rejection_sample_token_eager,
            "block": eager.rejection_sample_block_eager}[op]


def eager_fn(op: str, x: Inputs, impl=None) -> Callable[[], tuple]:
    impl = impl or eager_callable(op)
    if op == "greedy":
        return lambda: impl(x.target, x.tokens_greedy)
    return lambda: impl(x.target, x.tokens_sampled, x.draft, x.temperature)


def reference_fn(op: str, x: Inputs) -> Callable[[], tuple]:
    if op == "greedy":
        return lambda: ref_impl.verify_greedy(x.target, x.tokens_greedy)
    return lambda: ref_impl.rejection_sample(x.target, x.tokens_sampled, x.draft,
                                             x.temperature, x.seed, x.offset, method=op)


def reference_applies(mode: str, B: int, K: int, V: int, dt: str) -> bool:
    """The float64 reference loops over rows in Python (seconds per call): small shapes only,
    and in --quick / --summary a single shape."""
    if mode in ("quick", "summary"):
        return (B, K, V, dt) == (8, 7, 32000, "fp32")
    return B <= 8 and V <= 32000


def eager_peak_bytes(B: int, K: int, V: int) -> int:
    """Rough peak of the eager baseline: float32 copies, scaled logits, softmax of target and
    draft, and the block residual temporaries (about 4 float32 [B, 2K+1, V] tensors)."""
    return 4 * 4 * B * (2 * K + 1) * V


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------


@dataclass
class Case:
    op: str
    B: int
    K: int
    V: int
    dtype: str
    result: dict = field(default_factory=dict)


def run_shape(B: int, K: int, V: int, dt: str, args, device: torch.device, budget: Budget,
              copybw: CopyBandwidth, large_copy: dict, compiled: dict) -> List[Case]:
    dtype = DTYPES[dt]
    x = make_inputs(B, K, V, dtype, device, seed=args.seed)
    itemsize = x.target.element_size()
    input_bytes = (x.target.numel() + x.draft.numel()) * itemsize
    same_copy = copybw.measure(input_bytes)
    avail = mem_available() if device.type == "cpu" else None
    eager_ok = avail is None or eager_peak_bytes(B, K, V) < 0.6 * avail
    cases = []
    for op in args.ops:
        c = Case(op, B, K, V, dt)
        r = c.result
        r["input_bytes"] = input_bytes
        # native
        fn = native_fn(op, x)
        out = fn()
        sync(device)
        w, reps, secs = budget.native
        med, times = time_fn(fn, device, w, reps, secs, budget.min_reps)
        r["native_s"], r["native_reps"] = med, len(times)
        r["native_min_s"] = min(times)
        accepted = out[0]
        r["accepted_mean"] = float(accepted.double().mean())
        r["tau_mean"] = r["accepted_mean"] + 1.0  # design §5: tau counts the bonus token
        nb = bytes_moved(op, accepted, B, K, V, itemsize)
        r["bytes"] = nb
        r["GBps"] = nb["total"] / med / 1e9
        r["copy_same_GBps"] = same_copy["GBps"]
        r["copy_large_GBps"] = large_copy["GBps"]
        r["frac_copy_same"] = r["GBps"] / same_copy["GBps"]
        r["frac_copy_large"] = r["GBps"] / large_copy["GBps"]
        # eager baseline
        if eager_ok:
            efn = eager_fn(op, x)
            eout = efn()
            w, reps, secs = budget.eager
            emed, etimes = time_fn(efn, device, w, reps, secs, budget.min_reps)
            r["eager_s"], r["eager_reps"] = emed, len(etimes)
            r["x_eager"] = emed / med
            # best-of-repeats ratio: less sensitive to a busy machine than the medians
            r["eager_min_s"] = min(etimes)
            r["x_eager_best"] = min(etimes) / r["native_min_s"]
            r["eager_accepted_mean"] = float(eout[0].double().mean())
            if op == "greedy":  # greedy must agree exactly
                r["matches_eager"] = bool(torch.equal(eout[1].cpu(), out[1].cpu())
                                          and torch.equal(eout[0].cpu(), out[0].cpu()))
            del eout
        else:
            r["eager_skipped"] = (f"estimated peak {eager_peak_bytes(B, K, V) / GIB:.1f} GiB"
                                  f" > 60% of available memory")
        # torch.compile of the eager baseline
        if args.compile_baseline and eager_ok:
            key = (op, B, K, V, dt)
            try:
                if key not in compiled:
                    # A fresh compile per shape: dynamo's recompile limit would otherwise make
                    # later shapes silently fall back to eager.
                    torch._dynamo.reset()
                    compiled.clear()
                    compiled[key] = torch.compile(eager_callable(op), dynamic=False)
                impl = compiled[key]
                cfn = eager_fn(op, x, impl)
                t0 = time.perf_counter()
                cfn()
                sync(device)
                r["compile_s"] = time.perf_counter() - t0
                w, reps, secs = budget.eager
                cmed, ctimes = time_fn(cfn, device, w, reps, secs, budget.min_reps)
                r["compiled_s"], r["compiled_reps"] = cmed, len(ctimes)
                r["x_compiled"] = cmed / med
            except Exception as e:  # noqa: BLE001 - report, do not abort the benchmark
                r["compiled_error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
                print(f"  torch.compile baseline failed for {key}: {r['compiled_error']}")
        # float64 reference (small shapes only)
        if args.reference and reference_applies(args.mode, B, K, V, dt):
            rfn = reference_fn(op, x)
            w, reps, secs = budget.ref
            rmed, rtimes = time_fn(rfn, device, w, reps, secs, 1)
            r["ref_s"], r["ref_reps"] = rmed, len(rtimes)
            r["x_ref"] = rmed / med
        cases.append(c)
        # block next to token-wise: the extra pass, as a time ratio on the same inputs
        done = {d.op: d for d in cases}
        if op == "block" and "token" in done:
            r["block_over_token"] = r["native_s"] / done["token"].result["native_s"]
        if not args.compact:
            print(format_row(c), flush=True)
    del x
    return cases


# --------------------------------------------------------------------------------------------
# Reporting
# --------------------------------------------------------------------------------------------

COLUMNS = ("op", "B", "K", "V", "dtype", "acc", "acc_eg", "native_ms", "eager_ms", "x_eager",
           "comp_ms", "x_comp", "ref_ms", "x_ref", "MB", "GB/s", "copyGB/s", "%copy",
           "%copyL", "blk/tok")
WIDTHS = (6, 4, 3, 7, 5, 5, 6, 10, 9, 7, 8, 6, 9, 7, 8, 7, 8, 6, 6, 7)


def _f(v, fmt):
    return "-" if v is None else format(v, fmt)


def format_header() -> str:
    return " ".join(h.rjust(w) for h, w in zip(COLUMNS, WIDTHS))


def format_row(c: Case) -> str:
    r = c.result
    ms = lambda k: None if k not in r else r[k] * 1e3  # noqa: E731
    vals = (c.op, str(c.B), str(c.K), str(c.V), c.dtype,
            _f(r.get("accepted_mean"), ".2f"), _f(r.get("eager_accepted_mean"), ".2f"),
            _f(ms("native_s"), ".3f"), _f(ms("eager_s"), ".2f"), _f(r.get("x_eager"), ".1f"),
            _f(ms("compiled_s"), ".2f"), _f(r.get("x_compiled"), ".1f"),
            _f(ms("ref_s"), ".0f"), _f(r.get("x_ref"), ".0f"),
            _f(r["bytes"]["total"] / 1e6, ".2f"), _f(r.get("GBps"), ".2f"),
            _f(r.get("copy_same_GBps"), ".1f"), _f(100 * r["frac_copy_same"], ".0f"),
            _f(100 * r["frac_copy_large"], ".0f"), _f(r.get("block_over_token"), ".2f"))
    return " ".join(v.rjust(w) for v, w in zip(vals, WIDTHS))


COMPACT = ("case", "tau", "native", "eager", "speedup", "x_ref", "GB/s", "%copy", "blk/tok")
COMPACT_W = (34, 5, 10, 10, 8, 6, 6, 6, 7)


def format_compact_header() -> str:
    return " ".join(h.ljust(w) if i == 0 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(COMPACT, COMPACT_W)))


def format_compact(c: Case) -> str:
    """One short line: mean accepted length (tau, with the bonus), times, speedup vs eager,
    achieved GB/s and its share of the same-size copy bandwidth."""
    r = c.result
    name = {"greedy": "verify_greedy", "token": "rejection token", "block": "rejection block"}
    case = f"{name[c.op]} {c.B}x{c.K}x{c.V} {c.dtype}"
    t = lambda s: "-" if s is None else (f"{s * 1e3:.2f} ms" if s < 10 else f"{s:.1f} s")  # noqa
    vals = (case, _f(r.get("tau_mean"), ".2f"), t(r.get("native_s")), t(r.get("eager_s")),
            _f(r.get("x_eager"), ".1f") + ("x" if "x_eager" in r else ""),
            _f(r.get("x_ref"), ".0f") + ("x" if "x_ref" in r else ""),
            _f(r.get("GBps"), ".2f"), _f(100 * r["frac_copy_same"], ".0f") + "%",
            _f(r.get("block_over_token"), ".2f"))
    return " ".join(v.ljust(w) if i == 0 else v.rjust(w)
                    for i, (v, w) in enumerate(zip(vals, COMPACT_W)))


def targets(cases: List[Case], device: torch.device) -> List[dict]:
    """The issue's targets, evaluated honestly on this run's numbers."""
    out = []

    def find(op, **shape):
        for c in cases:
            if c.op == op and all(getattr(c, k) == v for k, v in shape.items()):
                return c
        return None

    if device.type == "cpu":
        tok = find("token", **HEADLINE)
        gr = find("greedy", **HEADLINE)
        shape = "B=32 K=7 V=32000 fp32 T=1"
        specs = [
            ("rejection_sample token: >= 5x eager", tok, "x_eager", 5.0),
            ("rejection_sample token: >= 40% of copy bandwidth (same-size buffer)", tok,
             "frac_copy_same", 0.40),
            ("verify_greedy: >= 5x eager", gr, "x_eager", 5.0),
        ]
        for name, c, key, need in specs:
            val = None if c is None else c.result.get(key)
            out.append({"target": f"{name} [{shape}]", "value": val, "need": need,
                        "pass": None if val is None else bool(val >= need)})
        # informative: the same fraction against the large (DRAM) copy
        if tok is not None:
            out.append({"target": f"(info) token: fraction of large-buffer copy bandwidth "
                                  f"[{shape}]", "value": tok.result["frac_copy_large"],
                        "need": 0.40, "pass": bool(tok.result["frac_copy_large"] >= 0.40)})
    else:
        for c in cases:
            if c.B >= 32 and c.V == 151936:
                val = c.result["frac_copy_same"]
                out.append({"target": f"{c.op} >= 70% of copy bandwidth [B={c.B} K={c.K} "
                                      f"V={c.V} {c.dtype}]", "value": val, "need": 0.70,
                            "pass": bool(val >= 0.70)})
    return out


def plot(cases: List[dict], large_copy: dict, out_dir: str, title: str) -> str:
    """``verify_bandwidth.png`` (``.svg`` without matplotlib) in ``out_dir``: achieved GB/s
    per case next to the copy bandwidth (harness.plot_bandwidth). ``cases`` are results.json
    entries."""
    return plot_bandwidth(cases, large_copy, os.path.join(out_dir, "verify_bandwidth"), title)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="default: cuda if available and dspark_ext was built with CUDA, else cpu")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="a subset of the grid (< 2 min on a 2-core CPU)")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke",
                      help="tiny shapes, a few seconds: checks the machinery only")
    mode.add_argument("--summary", action="store_const", dest="mode", const="summary",
                      help="headline cases only (< 1 min on a 2-core CPU)")
    p.add_argument("--out", default=os.path.join(HERE, "out"),
                   help="output directory for results.json and the plot")
    p.add_argument("--ops", default=",".join(OPS), help="comma list of greedy,token,block")
    p.add_argument("--compile-baseline", action="store_true",
                   help="also time torch.compile of the eager baseline (slow to compile)")
    p.add_argument("--no-reference", dest="reference", action="store_false",
                   help="skip the float64 reference column")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-plot", dest="plot", action="store_false")
    p.add_argument("--replot", metavar="RESULTS_JSON", default=None,
                   help="only redraw the plot (and the targets) of an existing results.json")
    p.add_argument("--compact", action="store_true",
                   help="print a short table (case, tau, times, speedup, GB/s, %%copy)")
    p.set_defaults(mode="full")
    args = p.parse_args(argv)
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
    bad = [o for o in args.ops if o not in OPS]
    if bad:
        p.error(f"unknown ops {bad}; choose from {OPS}")
    return args


def replot(path: str, out_dir: str) -> None:
    with open(path) as f:
        results = json.load(f)
    info = results["machine"]
    title = (f"dspark_ext verification, {info['device']} "
             f"({info.get('gpu', info.get('cpu_model', ''))}), mode {results['mode']}")
    os.makedirs(out_dir, exist_ok=True)
    print_targets(results["targets"])
    print(f"wrote {plot(results['cases'], results['copy_bandwidth']['large'], out_dir, title)}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.replot:
        replot(args.replot, args.out)
        return {}
    device = pick_device(args.device, args.threads)
    args.device = device.type
    budget = BUDGETS[args.mode]
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(args.seed)
    t_start = time.perf_counter()

    info = machine_info(device)
    copybw = CopyBandwidth(device, budget)
    large_bytes = budget.large_copy_bytes
    avail = mem_available() if device.type == "cpu" else None
    if avail is not None:
        large_bytes = min(large_bytes, avail // 4)
    large_copy = copybw.measure(large_bytes)
    print(f"dspark_ext {info['dspark_ext']['version']} | torch {torch.__version__} | "
          f"{info.get('gpu', info.get('cpu_model', platform.processor()))} | "
          f"threads {torch.get_num_threads()} | mode {args.mode}")
    print(f"copy bandwidth ({large_copy['bytes'] / GIB:.2f} GiB buffer, read+write): "
          f"{large_copy['GBps']:.2f} GB/s")
    print(format_compact_header() if args.compact else format_header(), flush=True)

    cases: List[Case] = []
    compiled: dict = {}
    for (B, K, V, dt) in grid(args.mode, device.type):
        shape_cases = run_shape(B, K, V, dt, args, device, budget, copybw, large_copy,
                                compiled)
        if args.compact:
            for c in shape_cases:
                print(format_compact(c), flush=True)
        cases += shape_cases

    tg = targets(cases, device)
    print_targets(tg)
    elapsed = time.perf_counter() - t_start
    results = {
        "machine": info,
        "mode": args.mode,
        "args": {k: v for k, v in vars(args).items()},
        "input_model": {"sigma": SIGMA, "draft_noise": DRAFT_NOISE, "disagree": DISAGREE,
                        "temperature": 1.0},
        "copy_bandwidth": {"large": large_copy,
                           "by_size": sorted(copybw.cache.values(), key=lambda d: d["bytes"])},
        "cases": [dict(op=c.op, B=c.B, K=c.K, V=c.V, dtype=c.dtype, **c.result) for c in cases],
        "targets": tg,
        "elapsed_s": elapsed,
        "loadavg_end": loadavg(),
    }
    path = write_json(results, os.path.join(args.out, "results.json"))
    print(f"\nwrote {path}")
    if args.plot and cases:
        title = (f"dspark_ext verification, {args.device} "
                 f"({info.get('gpu', info.get('cpu_model', ''))}), mode {args.mode}")
        print(f"wrote {plot(results['cases'], large_copy, args.out, title)}")
    print(f"elapsed {elapsed:.1f} s")
    return results


if __name__ == "__main__":
    main()
