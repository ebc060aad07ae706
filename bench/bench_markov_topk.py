#!/usr/bin/env python
"""The top-k Markov correction (issue 20): ``markov_sample(..., topk=k)`` against the dense
op and against vLLM's top-k Markov step, in one run, on the same inputs.

    python bench/bench_markov_topk.py [--smoke] [--device cpu|cuda] [--threads N] [--out DIR]

Cases: B = 32, K = 7, r = 256, T = 1, vanilla head, V = 151,936 (Qwen3) and 32,000, float32
and bfloat16, topk = 64 (the headline), 256 and 1024. Timed (median after warm-up):

* ``dense``   ``dspark_ext.markov_sample`` without topk: per step the [B, r] x [r, V] bias
              product and the V-lane passes;
* ``topk``    ``dspark_ext.markov_sample(topk=k)``;
* ``peer``    vLLM's top-k step (``DSparkSpeculator._sample_sequential_topk``): candidates by
              ``torch.topk`` once, a dense -inf buffer, and per step the W1 embedding, vLLM's
              own ``DSparkMarkovHead.apply_bias_gathered`` (imported from vLLM when it is
              installed, as in ``build/vllm-venv``) and Gumbel-max sampling over the dense
              truncated row. vLLM's sampler (``gumbel_sample``) is a Triton kernel that does
              not run on a CPU, so that part is its eager equivalent here (and the whole step
              is, without vLLM: ``peer_source`` says which).

Reports ``x_dense`` = dense / topk (goal >= 20 at the headline) and ``x_peer`` = peer / topk.
Writes ``markov_topk_results.json`` and ``markov_topk.{png,svg}`` to ``--out`` (default
bench/out).
"""
from __future__ import annotations

import argparse
import os
import sys
import types

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import dspark_ext  # noqa: E402

import harness  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
HEADLINE = dict(V=151936, dtype="fp32", topk=64)


def vllm_gathered_bias():
    """vLLM's ``DSparkMarkovHead.apply_bias_gathered`` as a function of (w2, embed, logits,
    values, index), or None without vLLM."""
    try:
        from vllm.model_executor.models.qwen3_dspark import DSparkMarkovHead
    except Exception:  # noqa: BLE001 (vLLM absent or not importable here)
        return None

    def apply(w2, embed, logits, values, index):
        head = types.SimpleNamespace(markov_w2=types.SimpleNamespace(
            weight=w2, _retain_weight_for_gather=False, is_w4a16_nvfp4=False))
        return DSparkMarkovHead.apply_bias_gathered(head, embed, logits, values, index)
    return apply


def eager_gathered_bias(w2, embed, logits, values, index):
    """The same math without vLLM: z = values + W2[index] . e scattered into the -inf row."""
    corrected = values + torch.einsum("bkr,br->bk", w2[index], embed)
    return logits.scatter_(1, index, corrected)


def peer_step(x, topk, gathered):
    """vLLM's sequential top-k drafting loop on CPU tensors (see the module docstring)."""
    base, w1, w2 = x["base"], x["w1"], x["w2"]
    values, index = base.topk(topk, dim=-1)
    logits = torch.full_like(base, float("-inf"))
    prev = x["anchor"]
    gen = torch.Generator(device=base.device).manual_seed(0)
    tokens = []
    for i in range(base.shape[1]):
        z = gathered(w2, w1[prev], logits[:, i], values[:, i], index[:, i])
        u = torch.rand(z.shape, generator=gen, device=z.device).clamp_min_(1e-20)
        prev = (z.float() / x["temp"][:, None] - torch.log(-torch.log(u))).argmax(-1)
        tokens.append(prev)
    return torch.stack(tokens, 1)


def make_inputs(B, K, V, dtype, device, rank, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(base=(torch.randn(B, K, V, generator=g) * 2.0).to(dtype).to(device),
                w1=(torch.randn(V, rank, generator=g) * 0.5).to(dtype).to(device),
                w2=(torch.randn(V, rank, generator=g) * (2.0 / rank ** 0.5)).to(dtype).to(device),
                anchor=torch.randint(0, V, (B,), generator=g).to(device),
                temp=torch.ones(B, device=device),
                seed=(torch.arange(B) * 7919 + 1).to(device),
                offset=torch.full((B,), 42, dtype=torch.int64, device=device))


def run_case(B, K, V, dt, rank, topks, device, budget, gathered, peer_source):
    x = make_inputs(B, K, V, DTYPES[dt], device, rank)
    args = (x["base"], x["anchor"], x["w1"], x["w2"], x["temp"], x["seed"], x["offset"])
    w, reps, secs = budget
    dense_s, _ = harness.time_fn(lambda: dspark_ext.markov_sample(*args), device, w, reps, secs)
    rows = []
    for k in topks:
        topk_s, _ = harness.time_fn(lambda: dspark_ext.markov_sample(*args, topk=k), device, w,
                                    reps, secs)
        peer_s, _ = harness.time_fn(lambda: peer_step(x, k, gathered), device, w, reps, secs)
        rows.append(dict(B=B, K=K, V=V, r=rank, dtype=dt, topk=k, dense_s=dense_s,
                         topk_s=topk_s, peer_s=peer_s, x_dense=dense_s / topk_s,
                         x_peer=peer_s / topk_s, peer_source=peer_source))
        print(f"B={B} K={K} V={V} {dt} topk={k}: dense {dense_s * 1e3:.1f} ms, topk "
              f"{topk_s * 1e3:.2f} ms, peer {peer_s * 1e3:.1f} ms -> x_dense "
              f"{rows[-1]['x_dense']:.1f}, x_peer {rows[-1]['x_peer']:.1f}", flush=True)
    return rows


def plot(rows, path_stem):
    labels = [f"V={r['V'] // 1000}k {r['dtype']} k={r['topk']}" for r in rows]
    plt = harness.pyplot()
    if plt is None:  # matplotlib is an optional extra
        return None
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(rows)), 4))
    xs = range(len(rows))
    ax.bar([i - 0.2 for i in xs], [r["x_dense"] for r in rows], 0.4, label="dense / topk")
    ax.bar([i + 0.2 for i in xs], [r["x_peer"] for r in rows], 0.4, label="peer / topk")
    ax.axhline(20, color="grey", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("speed-up of markov_sample(topk)")
    ax.legend()
    return harness.save_figure(plt, fig, path_stem)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, one repeat")
    ap.add_argument("--device", choices=("cpu", "cuda"), default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    a = ap.parse_args(argv)
    device = harness.pick_device(a.device, a.threads)
    gathered = vllm_gathered_bias()
    peer_source = ("vLLM DSparkMarkovHead.apply_bias_gathered + eager Gumbel-max"
                   if gathered is not None else "eager re-implementation (no vLLM)")
    gathered = gathered or eager_gathered_bias
    if a.smoke:
        cases, topks, budget = [(4, 3, 2048, "fp32", 32)], [8], (1, 2, 0.1)
    else:
        cases = [(32, 7, v, dt, 256) for v in (151936, 32000) for dt in ("fp32", "bf16")]
        topks, budget = [64, 256, 1024], (1, 5, 3.0)
    rows = []
    for B, K, V, dt, rank in cases:
        rows += run_case(B, K, V, dt, rank, topks, device, budget, gathered, peer_source)
    head = [r for r in rows if all(r[k] == v for k, v in HEADLINE.items())]
    results = {"machine": harness.machine_info(device), "peer_source": peer_source,
               "cases": rows, "headline": head[0] if head else None}
    os.makedirs(a.out, exist_ok=True)
    print("wrote", harness.write_json(results, os.path.join(a.out, "markov_topk_results.json")))
    fig = plot(rows, os.path.join(a.out, "markov_topk"))
    if fig:
        print("wrote", fig)
    return results


if __name__ == "__main__":
    main()
