#!/usr/bin/env python3
"""Parity of dspark_ext's DSparkDrafter with DeepSpec's own Qwen3DSparkModel.

For each head variant, builds a tiny random ``Qwen3DSparkModel`` with DeepSpec's classes
(sdpa attention, float32 by default), writes it with DeepSpec's (transformers') ``save_pretrained``, loads
the directory with ``DSparkDrafter.from_pretrained`` and compares:

* the decode path over several rounds: DeepSpec's ``forward_dspark_draft_block`` with a
  ``DynamicCache`` (new context appended each round, block cropped after), then
  ``compute_logits`` + ``sample_draft_tokens`` at T = 0 + ``predict_confidence_step``, against
  ``update`` + ``draft`` on a batch of two requests with different histories (DeepSpec runs one
  request at a time);
* the training forward: DeepSpec's ``Qwen3DSparkModel.forward`` (flex attention, its own anchor
  sampler, seeded) against ``teacher_forced`` with the same anchors.

Prints the largest absolute differences and exits 1 when one exceeds ``--tolerance`` (or a
greedy token differs). DeepSpec itself is not part of this repository: pass a directory that
holds its ``deepspec`` package, e.g.::

    git -C <DeepSpec clone> archive HEAD deepspec | tar -x -C /tmp/deepspec_src
    python scripts/check_deepspec_parity.py --deepspec-src /tmp/deepspec_src

Needs transformers (DeepSpec's dependency); nothing is downloaded.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from types import SimpleNamespace

import torch

VARIANTS = {  # name -> (markov_rank, head type, confidence alpha, confidence with markov)
    "dflash": (0, None, 0.0, False),
    "vanilla_conf_markov": (16, "vanilla", 1.0, True),
    "gated_conf": (16, "gated", 1.0, False),
    "rnn_conf_markov": (16, "rnn", 1.0, True),
}
VOCAB, HIDDEN, HEADS, KV_HEADS, HEAD_DIM, TARGET_LAYERS, BLOCK = 160, 64, 4, 2, 16, 6, 5
LAYER_IDS = [-1, 1, 3]


class ModelArgs(dict):
    """DeepSpec reads its model args both as ``args.x`` and ``"x" in args``."""

    __getattr__ = dict.__getitem__


def import_deepspec(src: str):
    if not os.path.isdir(os.path.join(src, "deepspec")):
        sys.exit(f"--deepspec-src {src}: no 'deepspec' package directory there")
    sys.path.insert(0, os.path.abspath(src))
    from deepspec.eval.dspark.draft_ops import forward_dspark_draft_block
    from deepspec.modeling.dspark.common import sample_anchor_positions
    from deepspec.modeling.dspark.qwen3 import Qwen3DSparkModel, build_draft_config
    return SimpleNamespace(model_cls=Qwen3DSparkModel, build_config=build_draft_config,
                           draft_block=forward_dspark_draft_block,
                           sample_anchors=sample_anchor_positions)


def build_deepspec_model(ds, variant: str, seed: int, dtype: torch.dtype = torch.float32):
    from transformers import Qwen3Config
    rank, head, alpha, with_markov = VARIANTS[variant]
    target = Qwen3Config(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=2 * HIDDEN,
                         num_hidden_layers=TARGET_LAYERS, num_attention_heads=HEADS,
                         num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM,
                         max_position_embeddings=4096, rope_theta=10000.0)
    args = ModelArgs(num_draft_layers=2, target_layer_ids=LAYER_IDS, confidence_head_alpha=alpha,
                     confidence_head_with_markov=with_markov, markov_rank=rank,
                     block_size=BLOCK, mask_token_id=VOCAB - 1, num_anchors=16)
    if head is not None:
        args["markov_head_type"] = head
    config = ds.build_config(target, args)
    config._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = ds.model_cls(config).float().eval()
    with torch.no_grad():  # weights far from DeepSpec's tiny init, so logits are not near ties
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn_like(p))
            else:
                fan_in = 1 if ("markov_w1" in name or "embed" in name) else p.shape[-1]
                p.copy_(torch.randn_like(p) * (1.5 / fan_in ** 0.5))
    return model.to(dtype)


class Diffs:
    def __init__(self):
        self.max = {}
        self.token_mismatch = 0

    def add(self, name, ours, theirs):
        d = (ours.double() - theirs.double()).abs().max().item() if ours.numel() else 0.0
        self.max[name] = max(self.max.get(name, 0.0), d)


def legacy_crop_cache():
    """A DynamicCache whose ``crop(n)`` with n > 0 keeps the first n tokens, as in the
    transformers DeepSpec pins (5.10); newer releases (5.24 here) only accept a negative count
    of tokens to drop and raise on DeepSpec's ``crop(start)``."""
    from transformers import DynamicCache

    class LegacyCropCache(DynamicCache):
        def crop(self, max_length: int) -> None:
            if max_length > 0:
                max_length = min(0, max_length - self.get_seq_length())
            super().crop(max_length)

    return LegacyCropCache()


def decode_parity(ds, theirs, ours, diffs: Diffs, rounds: int, seed: int) -> None:
    """Two requests with different histories: DeepSpec one at a time, ours batched."""
    from dspark_ext.drafters.base import ContextUpdate
    gen = torch.Generator().manual_seed(seed)
    feat = len(LAYER_IDS) * HIDDEN
    prompts = [7, 3]
    rows = [SimpleNamespace(cache=legacy_crop_cache(), start=p,
                            pending=torch.randn(1, p, feat, generator=gen),
                            anchor=int(torch.randint(0, VOCAB - 1, (1,), generator=gen)))
            for p in prompts]
    ours.reset(2, "cpu")
    position_ids = torch.arange(4096)[None]
    for _ in range(rounds):
        # Ours: append every row's pending committed tokens (ragged), then draft both rows.
        n = max(r.pending.shape[1] for r in rows)
        feats = torch.zeros(2, n, feat)
        pos = torch.zeros(2, n, dtype=torch.int64)
        counts = []
        for b, r in enumerate(rows):
            c = r.pending.shape[1]
            feats[b, :c] = r.pending[0]
            pos[b, :c] = torch.arange(r.start - c, r.start)
            counts.append(c)
        ours.update(ContextUpdate(torch.zeros(2, n, dtype=torch.int64), torch.tensor(counts),
                                  pos, feats))
        zeros = torch.zeros(2, dtype=torch.int64)
        block = ours.draft(torch.tensor([r.anchor for r in rows]),
                           torch.tensor([r.start for r in rows]), BLOCK,
                           torch.zeros(2), zeros, zeros)
        for b, r in enumerate(rows):
            ids = torch.full((1, BLOCK), theirs.mask_token_id, dtype=torch.long)
            ids[0, 0] = r.anchor
            with torch.no_grad():
                hidden = ds.draft_block(theirs, draft_input_ids=ids, position_ids=position_ids,
                                        past_key_values_draft=r.cache,
                                        target_hidden_states=r.pending.to(theirs.dtype),
                                        start=r.start,
                                        block_size=BLOCK)
                base = theirs.compute_logits(hidden)
                tokens, logits = theirs.sample_draft_tokens(
                    base, first_prev_token_ids=ids[:, 0], temperature=0.0, hidden_states=hidden)
                prev = torch.cat([ids[:, :1], tokens[:, :-1]], dim=1)
                conf = theirs.predict_confidence_step(hidden, prev_token_ids=prev)
            diffs.add("decode hidden", block.hidden[b], hidden[0])
            diffs.add("decode base_logits", block.base_logits[b], base[0])
            # Position k's corrected logits depend on the tokens before k: compare them up to
            # the first position where the greedy tokens differ (none in float32; at a
            # near-tie in bfloat16 the two roundings may pick different tokens).
            differ = (block.draft_tokens[b] != tokens[0]).nonzero()
            upto = BLOCK if differ.numel() == 0 else int(differ[0]) + 1
            diffs.add("decode draft_logits", block.draft_logits[b, :upto], logits[0, :upto])
            if conf is not None:
                diffs.add("decode confidence_logits", block.confidence_logits[b, :upto],
                          conf[0, :upto])
            diffs.token_mismatch += int(differ.numel() > 0)
            # Commit: the anchor and a random number of accepted drafts, then a new anchor.
            accepted = int(torch.randint(0, BLOCK + 1, (1,), generator=gen))
            r.pending = torch.randn(1, accepted + 1, feat, generator=gen)
            r.start += accepted + 1
            r.anchor = int(torch.randint(0, VOCAB - 1, (1,), generator=gen))


def training_parity(ds, theirs, ours, diffs: Diffs, seed: int) -> str:
    """DeepSpec's training forward (flex attention) against teacher_forced, same anchors."""
    seq = 24
    gen = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, VOCAB - 1, (2, seq), generator=gen)
    feats = torch.randn(2, seq, len(LAYER_IDS) * HIDDEN, generator=gen)
    loss_mask = torch.ones(2, seq)
    loss_mask[1, :5] = 0
    loss_mask[1, 20:] = 0
    theirs.config._attn_implementation = "flex_attention"
    # The anchors DeepSpec's forward samples, recorded as it draws them (re-drawing them with
    # the same seed afterwards is not enough: its flex-attention path may consume the global
    # RNG first, which made this comparison differ from run to run).
    module = sys.modules[type(theirs).__module__]
    sampler, drawn = module.sample_anchor_positions, []

    def recording_sampler(*args, **kwargs):
        drawn.append(sampler(*args, **kwargs))
        return drawn[-1]

    module.sample_anchor_positions = recording_sampler
    try:
        torch.manual_seed(seed)
        with torch.no_grad():
            out = theirs(input_ids=ids, target_hidden_states=feats.to(theirs.dtype),
                         loss_mask=loss_mask)
    except Exception as exc:  # flex attention unavailable on this build
        return f"training forward skipped: DeepSpec's flex-attention forward failed ({exc!r})"
    finally:
        theirs.config._attn_implementation = "sdpa"
        module.sample_anchor_positions = sampler
    if len(drawn) != 1:
        return f"training forward skipped: DeepSpec drew anchors {len(drawn)} times"
    anchors, keep = drawn[0]
    with torch.no_grad():
        tf = ours.teacher_forced(feats, ids, anchors, keep, loss_mask)
    k = keep[:, :, None].expand_as(tf.target_ids)
    diffs.add("train draft_logits (kept blocks)", tf.draft_logits[k], out.draft_logits[k])
    if out.confidence_pred is not None:
        diffs.add("train confidence_logits (kept)", tf.confidence_logits[k], out.confidence_pred[k])
    if not torch.equal(tf.label_mask, out.eval_mask) or \
            not torch.equal(tf.target_ids[k], out.target_ids[k]):
        diffs.token_mismatch += 1
    return f"training forward: {int(keep.sum())} kept blocks of {keep.numel()}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--deepspec-src", required=True, help="directory holding the deepspec package")
    ap.add_argument("--tolerance", type=float, default=None,
                    help="largest allowed difference (default 1e-4 for float32, 0.1 otherwise)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="weights and compute dtype of both models; below float32 the two "
                         "round differently, so only the differences are reported, and greedy "
                         "tokens may differ at near-ties (not counted as failures)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", nargs="*", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    exact = dtype == torch.float32
    if args.tolerance is None:
        args.tolerance = 1e-4 if exact else 0.1
    ds = import_deepspec(args.deepspec_src)
    from dspark_ext.drafters.dspark import DSparkDrafter
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    worst, failed = 0.0, False
    for variant in args.variants:
        theirs = build_deepspec_model(ds, variant, args.seed, dtype)
        diffs = Diffs()
        with tempfile.TemporaryDirectory() as tmp:
            theirs.save_pretrained(tmp)
            ours = DSparkDrafter.from_pretrained(tmp).eval()
            with open(os.path.join(tmp, "config.json"), encoding="utf-8") as f:
                config_ok = ours.config.to_dict() == json.load(f)
        with tempfile.TemporaryDirectory() as tmp:  # and back: DeepSpec loads what we write
            ours.save_pretrained(tmp)
            back = ds.model_cls.from_pretrained(tmp, attn_implementation="sdpa")
            back_ok = all(torch.equal(t, back.state_dict()[n])
                          for n, t in theirs.state_dict().items())
        print(f"[{variant}] config.json round-trips: {config_ok}; DeepSpec reloads our "
              f"save_pretrained unchanged: {back_ok}")
        failed |= not (config_ok and back_ok)
        decode_parity(ds, theirs, ours, diffs, args.rounds, args.seed)
        note = training_parity(ds, theirs, ours, diffs, args.seed)
        print(f"[{variant}] {note}")
        for name, d in diffs.max.items():
            print(f"  max |ours - DeepSpec| {name:34s} {d:.3e}")
            worst = max(worst, d)
        print(f"  blocks whose greedy tokens differ / label mismatches: {diffs.token_mismatch}")
        failed |= (exact and diffs.token_mismatch > 0) or any(d > args.tolerance for d in diffs.max.values())
    print(f"worst difference {worst:.3e} (tolerance {args.tolerance:g}): "
          f"{'FAIL' if failed else 'OK'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
