#!/usr/bin/env python
"""Where a decoding round's time goes, and how close the achieved speed-up comes to what the
target's own SPS curve allows (issue 17, items 5 and 7), in one command.

    python bench/bench_round.py [--prompts 8] [--max-new-tokens 128] [--batches 1,8,32]
                                [--drafters dspark,dflash,ngram] [--temperatures 0,1]
                                [--threads N] [--repeats 1] [--out bench/out] [--smoke]

Bundled pair (``dspark_ext.bundled``), held-out prompts in their fixed order (the first
``max(--prompts, B)`` at batch B), gamma 7. For every temperature and batch, in one run:

* the autoregressive baselines: ours (``eval.autoregressive``) and HF ``generate``; the
  faster one is the reference of every ratio;
* the target's SPS curve t(n) (one forward over n new tokens, ``measure_sps``), giving
  t_AR(B) = t(B) and t_verify(B) = t(B (gamma + 1));
* per drafter, ``FixedLength(gamma)``: tokens/s, tau, and a profiled rerun
  (``generate(profile=True)``) splitting the round into draft (drafter backbone, its
  context update included), markov (the Markov op), target forward, verification op and
  bookkeeping, in ms per round and as fractions; the drafter's cost per round against
  t_AR(B) (the issue's "at most 20%");
* the ceiling tau x t_AR(B) / t_verify(B): the speed-up a free drafter and free bookkeeping
  would give at the measured tau and width, next to the achieved one;
* for DSpark, ``Scheduled`` with the skip rule, modelled (``draft_time`` = the profiled
  drafter cost per round, with the SPS curve) and measured (``draft_time="measured"``: the
  rounds' own times): the scheduler that must never lose to autoregressive decoding. The
  batches where FixedLength drops below 1x and Scheduled does not are the crossover.

Writes ``round_results.json`` and ``round_cost.{png,svg}`` to --out (default bench/out).
Timings from one run only mean something as ratios (the VM's noise is ~30%).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Dict, List

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

from dspark_ext import bundled  # noqa: E402
from dspark_ext.decoding import FixedLength, Scheduled, SpeculativeDecoder  # noqa: E402
from dspark_ext.eval.runner import EvalConfig, autoregressive, measure_sps  # noqa: E402

import harness  # noqa: E402

GAMMA = 7
PHASES = ("draft", "markov", "target_forward", "verify_op", "bookkeeping")
DRAFTER_PHASES = ("draft", "markov")


def _batches(ids: List[List[int]], b: int) -> List[List[List[int]]]:
    return [ids[i:i + b] for i in range(0, len(ids), b)]


def _timed(run: Callable[[List[List[int]]], List[List[int]]], groups, repeats: int) -> Dict:
    """Warm-up on the first group, then ``repeats`` passes over all groups; median wall."""
    run(groups[0][:1])
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        new = [row for g in groups for row in run(g)]
        walls.append(time.perf_counter() - t0)
    n = sum(len(r) for r in new)
    wall = statistics.median(walls)
    return {"wall_s": wall, "new_tokens": n, "tokens_per_s": n / wall, "outputs": new}


class Bench:
    def __init__(self, a):
        self.a = a
        self.pair = bundled.default_pair("dspark")
        self.model = self.pair.target
        self.eos = self.pair.eos_token_id
        self.drafters = {"dspark": self.pair.drafter}
        for name in a.drafters:
            if name not in self.drafters:
                self.drafters[name] = bundled.load_drafter(
                    name, bundled.fast_drafter_dtype(torch.float32))
        self.prompts = [list(p["input_ids"]) for p in bundled.heldout_prompts()]

    def baselines(self, t: float):
        a, eos = self.a, self.eos

        def ours(batch):
            cfg = EvalConfig(temperature=t, max_new_tokens=a.max_new_tokens,
                             batch_size=len(batch), seed=a.seed, eos_token_id=eos)
            return autoregressive(self.model, batch, cfg)["new_tokens"]

        def hf(batch, **extra):
            ids, mask = harness.left_pad(batch, eos)
            torch.manual_seed(a.seed)
            sample = {"do_sample": True, "temperature": t, "top_k": 0, "top_p": 1.0} if t > 0 \
                else {"do_sample": False}
            out = self.model.generate(ids, attention_mask=mask, max_new_tokens=a.max_new_tokens,
                                      eos_token_id=eos, pad_token_id=eos, **sample, **extra)
            return [harness.cut_eos(r, eos) for r in out[:, ids.shape[1]:].tolist()]
        return {"autoregressive": ours, "hf_generate": hf}

    def peers(self, t: float, batch: int):
        """HF's prompt lookup (the n-gram drafter's peer; HF runs it at batch 1 only)."""
        if batch != 1:
            return {}
        base = self.baselines(t)["hf_generate"]
        return {"hf_prompt_lookup": lambda b: base(b, prompt_lookup_num_tokens=GAMMA)}

    def speculative(self, drafter, t: float, policy_fn, profile: bool = False):
        dec = SpeculativeDecoder(self.model, drafter, gamma=GAMMA)
        verify = "greedy" if t == 0 else "token"
        box = {"stats": []}

        def run(batch):
            out = dec.generate(batch, max_new_tokens=self.a.max_new_tokens, temperature=t,
                               seed=self.a.seed, eos_token_id=self.eos, verify=verify,
                               length_policy=policy_fn(), profile=profile)
            box["stats"].append(out.stats)
            return out.new_tokens
        return run, box


def _split(stats_list, sps) -> Dict:
    """Per-round ms of each phase and the fractions over profiled generate calls, and the
    ceiling: per round r with R_r rows, verified width w_r (the longest row's drafts + 1) and
    n_r emitted tokens, autoregressive decoding would spend n_r / R_r steps of t(R_r), a free
    drafter t(R_r w_r); the ceiling is the ratio of the sums."""
    rounds = sum(s.num_rounds for s in stats_list)
    drafted = sum(sum(1 for r in s.rounds if r.drafted) for s in stats_list)
    totals = {p: sum(s.timings.get(p, 0.0) for s in stats_list) for p in PHASES}
    whole = sum(totals.values())
    acc = torch.cat([s.accepted() for s in stats_list]).double()
    ar_time = spec_time = 0.0
    for s in stats_list:
        for r in s.rounds:
            rows = int(r.accepted.numel())
            width = int(r.verified.max()) + 1 if rows else 1
            ar_time += float(r.accepted.sum() + rows) / rows * sps.step_time(rows)
            spec_time += sps.step_time(rows * width)
    return {"rounds": rounds, "drafted_rounds": drafted,
            "tau": float(acc.mean() + 1) if acc.numel() else float("nan"),
            "ceiling": ar_time / spec_time if spec_time else float("nan"),
            "ms_per_round": {p: 1e3 * v / max(rounds, 1) for p, v in totals.items()},
            "fraction": {p: v / whole if whole else 0.0 for p, v in totals.items()},
            "prefill_ms_per_call": 1e3 * sum(s.timings.get("prefill", 0.0)
                                             for s in stats_list) / max(len(stats_list), 1),
            "drafter_s_per_drafted_round": sum(totals[p] for p in DRAFTER_PHASES)
            / max(drafted, 1)}


def run_config(b: Bench, t: float, batch: int, sps) -> Dict:
    a = b.a
    groups = _batches(b.prompts[:max(a.prompts, batch)], batch)
    t_ar, t_ver = sps.step_time(batch), sps.step_time(batch * (GAMMA + 1))
    res = {"temperature": t, "batch": batch, "rows": sum(len(g) for g in groups),
           "t_ar_ms": 1e3 * t_ar, "t_verify_ms": 1e3 * t_ver, "baselines": {}, "drafters": {}}
    for name, run in b.baselines(t).items():
        r = _timed(run, groups, a.repeats)
        res["baselines"][name] = {k: v for k, v in r.items() if k != "outputs"}
        res["baselines"][name]["_outputs"] = r["outputs"]
    best_name = max(res["baselines"], key=lambda n: res["baselines"][n]["tokens_per_s"])
    best = res["baselines"][best_name]["tokens_per_s"]
    ar_out = res["baselines"]["autoregressive"].pop("_outputs")
    res["baselines"]["hf_generate"].pop("_outputs")
    res["fastest_baseline"] = best_name
    res["peers"] = {}
    for name, run in b.peers(t, batch).items():
        r = _timed(run, groups, a.repeats)
        res["peers"][name] = {"tokens_per_s": r["tokens_per_s"],
                              "speedup": r["tokens_per_s"] / best}
    sts = bundled.sts_temperatures("dspark", t)
    for name in a.drafters:
        drafter = b.drafters[name]
        fixed = lambda: FixedLength(GAMMA)  # noqa: E731
        run, box = b.speculative(drafter, t, fixed)
        r = _timed(run, groups, a.repeats)
        prun, pbox = b.speculative(drafter, t, fixed, profile=True)
        for g in groups:
            prun(g)
        split = _split(pbox["stats"], sps)
        tau, ceiling = split["tau"], split["ceiling"]
        entry = {"tokens_per_s": r["tokens_per_s"], "speedup": r["tokens_per_s"] / best,
                 "tau": tau, "ceiling": ceiling,
                 "fraction_of_ceiling": (r["tokens_per_s"] / best) / ceiling,
                 "drafter_vs_ar_step": split["drafter_s_per_drafted_round"] / t_ar,
                 "bookkeeping_and_verify_fraction": split["fraction"]["bookkeeping"]
                 + split["fraction"]["verify_op"],
                 "round": split}
        if t == 0:
            entry["greedy_identical_to_ar"] = r["outputs"] == ar_out
        if name == "dspark":
            dt = split["drafter_s_per_drafted_round"]
            # The skip rule two ways: modelled (SPS curve + the profiled drafter time) and
            # from the rounds' own measured times.
            for key, gate in (("scheduled", dt), ("scheduled_measured", "measured")):
                srun, sbox = b.speculative(drafter, t,
                                           lambda g=gate: Scheduled(sps, sts, draft_time=g))
                s = _timed(srun, groups, a.repeats)
                last = sbox["stats"][-len(groups):]
                entry[key] = {
                    "tokens_per_s": s["tokens_per_s"], "speedup": s["tokens_per_s"] / best,
                    "draft_time": "measured" if gate == "measured" else 1e3 * dt,
                    "drafted_rounds": sum(sum(1 for x in st.rounds if x.drafted)
                                          for st in last),
                    "rounds": sum(st.num_rounds for st in last)}
                if t == 0:
                    entry[key]["greedy_identical_to_ar"] = s["outputs"] == ar_out
        res["drafters"][name] = entry
    if "ngram" in res["drafters"] and "hf_prompt_lookup" in res["peers"]:
        res["ngram_vs_hf_prompt_lookup"] = (res["drafters"]["ngram"]["tokens_per_s"]
                                            / res["peers"]["hf_prompt_lookup"]["tokens_per_s"])
    return res


def _print(res: Dict) -> None:
    t, batch = res["temperature"], res["batch"]
    base = res["baselines"]
    print(f"\nT={t:g} B={batch} ({res['rows']} rows): t_AR {res['t_ar_ms']:.2f} ms, "
          f"t_verify({batch * (GAMMA + 1)} tok) {res['t_verify_ms']:.2f} ms; "
          + ", ".join(f"{n} {v['tokens_per_s']:.1f} tok/s" for n, v in base.items()))
    for name, e in res["peers"].items():
        print(f"  {name}: {e['tokens_per_s']:.1f} tok/s, {e['speedup']:.2f}x")
    if "ngram_vs_hf_prompt_lookup" in res:
        print(f"  NgramDrafter / HF prompt lookup: {res['ngram_vs_hf_prompt_lookup']:.2f}x")
    for name, e in res["drafters"].items():
        ms = e["round"]["ms_per_round"]
        print(f"  {name:7} {e['speedup']:5.2f}x (ceiling {e['ceiling']:.2f}x, "
              f"{100 * e['fraction_of_ceiling']:.0f}%), tau {e['tau']:.2f}, drafter "
              f"{100 * e['drafter_vs_ar_step']:.0f}% of t_AR, round ms: "
              + " ".join(f"{p} {ms[p]:.2f}" for p in PHASES)
              + (f", greedy==AR {e['greedy_identical_to_ar']}" if t == 0 else ""))
        for key, label in (("scheduled", "Scheduled(draft_time=profiled)"),
                           ("scheduled_measured", 'Scheduled(draft_time="measured")')):
            if key in e:
                s = e[key]
                print(f"  {'':7} {label} {s['speedup']:5.2f}x, drafted "
                      f"{s['drafted_rounds']}/{s['rounds']} rounds"
                      + (f", greedy==AR {s['greedy_identical_to_ar']}" if t == 0 else ""))


def _plot(results: Dict, stem: str) -> str:
    plt = harness.pyplot()
    runs = results["runs"]
    labels = [f"{r['drafter']}\nT={r['temperature']:g} B={r['batch']}" for r in runs]
    if plt is None:
        return ""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(max(8, 0.9 * len(runs) + 4), 4.2))
    bottom = [0.0] * len(runs)
    for p in PHASES:
        vals = [r["round"]["ms_per_round"][p] for r in runs]
        ax1.bar(range(len(runs)), vals, bottom=bottom, label=p)
        bottom = [x + y for x, y in zip(bottom, vals)]
    ax1.set_xticks(range(len(runs)), labels, fontsize=6)
    ax1.set_ylabel("ms per round")
    ax1.legend(fontsize=7)
    ax1.set_title("round cost split (FixedLength)", fontsize=9)
    x = range(len(runs))
    ax2.plot(x, [r["ceiling"] for r in runs], "k_", markersize=14, label="ceiling")
    ax2.plot(x, [r["speedup"] for r in runs], "o", label="FixedLength")
    for key, mark, label in (("scheduled_speedup", "s", "Scheduled (modelled skip rule)"),
                             ("scheduled_measured_speedup", "^", "Scheduled (measured)")):
        ax2.plot(x, [r.get(key) or float("nan") for r in runs], mark, label=label)
    ax2.axhline(1.0, color="grey", lw=0.8)
    ax2.set_xticks(list(x), labels, fontsize=6)
    ax2.set_ylabel("speed-up vs fastest autoregressive")
    ax2.legend(fontsize=7)
    return harness.save_figure(plt, fig, stem)


def main(argv=None) -> Dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--batches", default="1,8,32")
    ap.add_argument("--drafters", default="dspark,dflash,ngram")
    ap.add_argument("--temperatures", default="0,1")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--smoke", action="store_true", help="2 prompts, 8 tokens, B = 1, 2")
    a = ap.parse_args(argv)
    if a.smoke:
        a.prompts, a.max_new_tokens, a.batches = 2, 8, "1,2"
    a.batches = [int(x) for x in a.batches.split(",")]
    a.drafters = [x for x in a.drafters.split(",") if x]
    a.temperatures = [float(x) for x in a.temperatures.split(",")]
    if a.threads:
        torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    b = Bench(a)
    top = max(a.batches) * (GAMMA + 1)  # every row count x width a round can have, roughly
    points = sorted({n for n in (1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192,
                                 256, 384, 512) if n < top} | {top})
    # At the context the rounds run at (a prompt plus half the new tokens): the cost of a
    # forward grows with the cache it attends over and copies.
    lens = sorted(len(p) for p in b.prompts[:max(a.prompts, max(a.batches))])
    context = lens[len(lens) // 2] + a.max_new_tokens // 2
    sps = measure_sps(b.model, points, 3 if a.smoke else 7, context=context)
    results = {"machine": harness.machine_info(torch.device("cpu")), "gamma": GAMMA,
               "threads": torch.get_num_threads(), "max_new_tokens": a.max_new_tokens,
               "prompts": a.prompts, "sps": sps.to_dict(), "sps_context": context, "configs": [], "runs": []}
    for t in a.temperatures:
        for batch in a.batches:
            res = run_config(b, t, batch, sps)
            _print(res)
            results["configs"].append(res)
            for name, e in res["drafters"].items():
                results["runs"].append({"drafter": name, "temperature": t, "batch": batch,
                                        "speedup": e["speedup"], "ceiling": e["ceiling"],
                                        "scheduled_speedup": e.get("scheduled", {}).get(
                                            "speedup"),
                                        "scheduled_measured_speedup": e.get(
                                            "scheduled_measured", {}).get("speedup"),
                                        "round": e["round"]})
    results["plot"] = _plot(results, os.path.join(a.out, "round_cost"))
    print("\nwrote", harness.write_json(results, os.path.join(a.out, "round_results.json")))
    return results


if __name__ == "__main__":
    main()
