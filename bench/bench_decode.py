#!/usr/bin/env python
"""End-to-end speculative decoding on this machine, side by side in one run.

    python bench/bench_decode.py [--quick | --smoke] [--out DIR] [--threads N]

Target: a random-weight Qwen3-config model (~60M parameters: hidden 512, 8 layers, vocab
32000; ``--smoke`` shrinks everything for the test suite). Draft model: the same config with
1 layer. Prompts repeat a short motif, so prompt lookup finds matches. For each configuration
it reports tokens/s, mean accepted length tau (with the bonus token), and the *overhead*:
wall time minus the time spent inside the target's and draft model's forward calls (timed by
forward hooks on both top-level modules, identically for HF and for dspark_ext), per round
and as a share of the round:

* ``hf_greedy``          plain ``model.generate`` (greedy), batch 1/8/32;
* ``hf_assisted_lm``     HF assisted generation with the small draft model (batch 1 only:
                         HF supports no more), ``hf_assisted_perfect`` with a copy of the
                         target as the assistant (every draft accepted: pure overhead),
                         ``hf_prompt_lookup`` (``prompt_lookup_num_tokens``);
* ``ours_lm`` / ``ours_ngram`` / ``ours_perfect``  SpeculativeDecoder with ModelDrafter(small),
                         NgramDrafter, ModelDrafter(copy of the target), batch 1/8/32,
                         plus the per-phase split (draft, target forward, verification op,
                         bookkeeping) from ``generate(profile=True)``.

Random weights make a real draft model useless (acceptance ~0), which is why the perfect
drafter is the fair overhead comparison ("at equal acceptance"). Writes
``decode_results.json`` and ``decode_overhead.png`` to ``--out`` (default bench/out).
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (HERE, os.path.dirname(HERE)):
    if p not in sys.path:
        sys.path.insert(0, p)

import dspark_ext  # noqa: E402
from dspark_ext import ModelDrafter, NgramDrafter, SpeculativeDecoder  # noqa: E402
from dspark_ext.plotting import pyplot  # noqa: E402

GAMMA = 4


def build(size: str, seed: int, layers: int):
    import transformers
    dims = {"full": dict(vocab_size=32000, hidden_size=512, intermediate_size=1536,
                         num_attention_heads=8, num_key_value_heads=4, head_dim=64),
            "smoke": dict(vocab_size=512, hidden_size=64, intermediate_size=128,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=16)}[size]
    torch.manual_seed(seed)
    cfg = transformers.Qwen3Config(num_hidden_layers=layers, max_position_embeddings=4096,
                                   tie_word_embeddings=False, attn_implementation="sdpa",
                                   **dims)
    model = transformers.Qwen3ForCausalLM(cfg).eval()
    with torch.no_grad():  # sharper than the default init: less tie-prone greedy decoding
        model.lm_head.weight.mul_(4.0)
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = 0
    return model


class ForwardClock:
    """Seconds spent inside the forward of the watched modules (outermost calls only), and
    the number of calls of the first one (the target: one call per round, plus prefill)."""

    def __init__(self, *modules):
        self.total = 0.0
        self.target_calls = 0
        self._depth = 0
        self._t0 = 0.0
        self._handles = []
        self._handles.append(modules[0].register_forward_pre_hook(self._count))
        for m in {id(m): m for m in modules}.values():
            self._handles.append(m.register_forward_pre_hook(self._pre))
            self._handles.append(m.register_forward_hook(self._post))

    def _count(self, *_):
        self.target_calls += 1

    def _pre(self, *_):
        if self._depth == 0:
            self._t0 = time.perf_counter()
        self._depth += 1

    def _post(self, *_):
        self._depth -= 1
        if self._depth == 0:
            self.total += time.perf_counter() - self._t0

    def close(self):
        for h in self._handles:
            h.remove()


def prompts(batch: int, length: int, vocab: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(batch):
        motif = torch.randint(1, vocab, (8,), generator=g)
        rows.append(motif.repeat(length // 8 + 1)[:length])
    return torch.stack(rows)


def measure(name, run, models, new_tokens, batch, repeats):
    """run() -> (number of new tokens, rounds, tau or None, timings or None)."""
    run()  # warm-up
    best = None
    for _ in range(repeats):
        clock = ForwardClock(*models)
        t0 = time.perf_counter()
        n, rounds, tau, timings = run()
        wall = time.perf_counter() - t0
        clock.close()
        rec = {"name": name, "batch": batch, "wall_s": wall, "new_tokens": n,
               "tokens_per_s": n / wall, "forward_s": clock.total,
               "overhead_s": wall - clock.total, "rounds": rounds, "tau": tau,
               "target_calls": clock.target_calls, "phases_s": timings}
        if best is None or wall < best["wall_s"]:
            best = rec
    # A round is one target forward (HF exposes no round count; its prefill is a round too).
    best["overhead_ms_per_round"] = 1e3 * best["overhead_s"] / best["target_calls"]
    best["overhead_share"] = best["overhead_s"] / best["wall_s"]
    tau = "-" if best["tau"] is None else f"{best['tau']:.2f}"
    print(f"  {name:22s} B={batch:3d} {best['tokens_per_s']:8.1f} tok/s  tau {tau:>5}  "
          f"rounds {best['target_calls']:4d}  overhead {best['overhead_ms_per_round']:6.2f} "
          f"ms/round ({100 * best['overhead_share']:4.1f}%)", flush=True)
    return best


def main(argv=None):
    ap = argparse.ArgumentParser()
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="batches 1 and 8, fewer tokens")
    mode.add_argument("--smoke", action="store_true", help="tiny models (the test suite)")
    ap.add_argument("--out", default=os.path.join(HERE, "out"))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    size = "smoke" if args.smoke else "full"
    new = 16 if args.smoke else (48 if args.quick else 96)
    batches = [1, 2] if args.smoke else ([1, 8] if args.quick else [1, 8, 32])
    repeats = 1 if args.smoke else 2
    target = build(size, 0, 2 if args.smoke else 8)
    small = build(size, 1, 1)
    twin = copy.deepcopy(target)
    vocab = target.config.vocab_size
    nparams = sum(p.numel() for p in target.parameters())
    print(f"bench_decode | target {nparams / 1e6:.1f}M params | gamma {GAMMA} | "
          f"{new} new tokens | threads {torch.get_num_threads()}", flush=True)
    results = []

    def hf(kwargs, ids, models):
        def run():
            out = target.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=new, min_new_tokens=new, **kwargs)
            n = (out.shape[1] - ids.shape[1]) * ids.shape[0]
            return n, None, None, None
        return run

    def ours(drafter, ids, verify="greedy"):
        dec = SpeculativeDecoder(target, drafter, gamma=GAMMA, verify=verify)

        def run():
            out = dec.generate(ids, max_new_tokens=new, profile=True)
            st = out.stats
            return (int(out.num_new_tokens.sum()), st.num_rounds, st.accepted_length(),
                    st.timings)
        return run

    for b in batches:
        ids = prompts(b, 32, vocab, seed=b)
        results.append(measure("hf_greedy", hf({}, ids, [target]), [target], new, b, repeats))
        if b == 1:
            for name, kw, models in (
                    ("hf_assisted_lm", {"assistant_model": small}, [target, small]),
                    ("hf_assisted_perfect", {"assistant_model": twin}, [target, twin]),
                    ("hf_prompt_lookup", {"prompt_lookup_num_tokens": GAMMA}, [target])):
                kw = dict(kw)
                if "assistant_model" in kw:
                    # Fixed gamma, as ours: HF's default heuristic would change it per round.
                    kw["assistant_model"].generation_config.num_assistant_tokens = GAMMA
                    kw["assistant_model"].generation_config.num_assistant_tokens_schedule = \
                        "constant"
                    kw["assistant_model"].generation_config.assistant_confidence_threshold = 0
                rec = measure(name, hf(kw, ids, models), models, new, b, repeats)
                results.append(rec)
        for name, drafter, models in (("ours_lm", ModelDrafter(small), [target, small]),
                                      ("ours_ngram", NgramDrafter(), [target]),
                                      ("ours_perfect", ModelDrafter(twin), [target, twin])):
            results.append(measure(name, ours(drafter, ids), models, new, b, repeats))
    base = {r["batch"]: r["tokens_per_s"] for r in results if r["name"] == "hf_greedy"}
    for r in results:
        r["speedup_vs_hf_greedy"] = r["tokens_per_s"] / base[r["batch"]]
    os.makedirs(args.out, exist_ok=True)
    meta = {"target_params": nparams, "gamma": GAMMA, "new_tokens": new,
            "threads": torch.get_num_threads(), "torch": torch.__version__,
            "dspark_ext": dspark_ext.build_info()}
    path = os.path.join(args.out, "decode_results.json")
    with open(path, "w") as f:
        json.dump({"meta": meta, "results": results}, f, indent=1)
    print(f"wrote {path}")
    hf_perf = next((r for r in results if r["name"] == "hf_assisted_perfect"), None)
    ours_perf = next((r for r in results if r["name"] == "ours_perfect" and r["batch"] == 1),
                     None)
    if hf_perf and ours_perf:
        hf_ms, ours_ms = hf_perf["overhead_ms_per_round"], ours_perf["overhead_ms_per_round"]
        print(f"perfect drafter, batch 1: overhead per round ours {ours_ms:.2f} ms vs HF "
              f"assisted {hf_ms:.2f} ms ({hf_ms / ours_ms:.1f}x lower)")
    plot(results, args.out)
    return results


def plot(results, out):
    plt = pyplot()
    if plt is None:
        print("matplotlib missing: no plot")
        return
    fig, ax = plt.subplots(1, 2, figsize=(11, 4))
    names = sorted({r["name"] for r in results})
    for name in names:
        rs = [r for r in results if r["name"] == name]
        ax[0].plot([r["batch"] for r in rs], [r["tokens_per_s"] for r in rs], "o-", label=name)
    ax[0].set_xscale("log", base=2)
    ax[0].set_xlabel("batch")
    ax[0].set_ylabel("tokens/s")
    ax[0].legend(fontsize=7)
    b1 = [r for r in results if r["batch"] == 1]
    ax[1].barh([r["name"] for r in b1], [r["overhead_s"] / r["wall_s"] for r in b1])
    ax[1].set_xlabel("share of wall time outside model forwards (batch 1)")
    fig.tight_layout()
    path = os.path.join(out, "decode_overhead.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
