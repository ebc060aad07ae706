"""The speculative decoding loop (SPEC §8), the one place that drives a target and a drafter.

Per round, for every request still running: the drafter proposes K tokens after the anchor
(the last committed token), the length policy picks how many each row verifies, the target
scores ``[anchor, drafts]`` in one forward, the verification op accepts a prefix and samples
the correction/bonus token, and both sides roll back what was rejected. Rows finish on
their own (EOS accepted, or ``max_new_tokens``) and leave the batch.

Host synchronisations per round: the verified width ``max(l) + 1``, the verdicts (accepted
counts and output tokens, one copy) and the target's cache crop -- a constant, whatever K
and the batch size.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

import torch
from torch import Tensor

from ..drafters.base import ContextUpdate, Drafter
from ..ops import rejection_sample, verify_greedy
from ..sampling import sample_target
from ..targets.base import Target, check_feature_layers
from .inputs import (check_offsets, per_row_seed, per_row_temperature,
                     prompts_to_right_padded, token_set)
from .policies import FixedLength
from .profile import PhaseTimer, phase
from .stats import GenerationStats, RoundStats
from .warp import check_top_k_top_p, truncate_logits

_VERIFY = ("greedy", "token", "block")
StreamCallback = Callable[[Dict[int, List[int]]], None]


@dataclass
class GenerationOutput:
    """sequences: int64 [B, L + N] (N = the most new tokens of any row): ``input_ids`` as
    given (padding included; left padding is what HF users pass), then each row's new tokens,
    padded with ``pad_token_id`` (default: the first EOS id, else 0). new_tokens: each row's new
    tokens. stats: per-round statistics (:class:`GenerationStats`)."""

    sequences: Tensor
    new_tokens: List[List[int]]
    stats: GenerationStats

    @property
    def num_new_tokens(self) -> Tensor:
        return torch.tensor([len(t) for t in self.new_tokens], dtype=torch.int64)


def as_target(target) -> Target:
    """A :class:`Target` adapter as is; a Hugging Face causal LM wrapped in HFTarget."""
    if hasattr(target, "prefill") and hasattr(target, "truncate"):
        return target
    if hasattr(target, "config") and hasattr(target, "get_input_embeddings"):
        from ..targets.hf import HFTarget
        return HFTarget(target)
    raise TypeError(f"target must be a Target adapter (prefill/forward/truncate) or a Hugging "
                    f"Face causal LM, got {type(target).__name__}")


class SpeculativeDecoder:
    """Lossless speculative decoding of ``target`` with ``drafter``.

    target: a Target adapter (:class:`~dspark_ext.targets.HFTarget`,
    :class:`~dspark_ext.targets.TorchTarget`) or a transformers causal LM.
    drafter: any :class:`~dspark_ext.drafters.Drafter` (DSpark, DFlash, n-gram, a small LM).
    gamma: draft tokens proposed per round (default: the drafter's ``max_draft``, else 4).
    verify: "greedy" (T = 0 only), "token" (rejection sampling) or "block" (block
    verification). length_policy: FixedLength (default), StaticThreshold or Scheduled.
    """

    def __init__(self, target, drafter: Drafter, *, gamma: Optional[int] = None,
                 verify: str = "token", length_policy=None):
        self.target = as_target(target)
        self.drafter = drafter
        self.gamma = gamma
        self.verify = verify
        self.length_policy = length_policy
        self._check_pair()

    def _check_pair(self) -> None:
        t, d = self.target, self.drafter
        dv = getattr(d, "vocab_size", None)
        if dv is not None and int(dv) != t.vocab_size:
            raise ValueError(f"drafter vocab_size {dv} != target vocab_size {t.vocab_size}")
        ids = getattr(d, "target_layer_ids", None)
        if ids is None:
            return
        check_feature_layers(ids, t.num_layers)
        # DSpark's fc projects len(ids) target hidden states of the drafter's own width.
        dh = getattr(d, "target_hidden_size", None) or getattr(
            getattr(d, "config", None), "hidden_size", None)
        if dh is not None and int(dh) != t.hidden_size:
            raise ValueError(f"drafter expects target features of hidden size {dh}, the target "
                             f"has hidden_size {t.hidden_size}")

    def _gamma(self, gamma: Optional[int]) -> int:
        k = gamma if gamma is not None else self.gamma
        limit = getattr(self.drafter, "max_draft", None)
        if k is None:
            k = limit if limit is not None else 4
        if not isinstance(k, int) or isinstance(k, bool) or k < 1:
            raise ValueError(f"gamma must be an int >= 1, got {k!r}")
        if limit is not None and k > limit:
            raise ValueError(f"gamma {k} exceeds the drafter's max_draft {limit}")
        return k

    @torch.no_grad()
    def generate(self, input_ids, attention_mask: Optional[Tensor] = None, *,
                 max_new_tokens: int = 32, temperature: Union[float, Tensor] = 0.0,
                 seed: Union[int, Tensor, None] = 0,
                 eos_token_id: Union[None, int, Sequence[int]] = None,
                 pad_token_id: Optional[int] = None, verify: Optional[str] = None,
                 gamma: Optional[int] = None, length_policy=None,
                 top_k: Optional[int] = None, top_p: Optional[float] = None,
                 stream: Optional[StreamCallback] = None,
                 profile: bool = False) -> GenerationOutput:
        """Continue every prompt by up to ``max_new_tokens`` tokens.

        input_ids [B, L] (left or right padded, with ``attention_mask``), [L], or a list of
        token lists. temperature: a number or float [B] (0 = greedy row). seed: an int (row b
        uses seed + b), an int64 tensor [B] (one Philox key per request: the same key gives
        the same tokens whatever batch the request runs in, for per-row policies), or None
        (fresh). eos_token_id: id(s) that end a row (the EOS is emitted, nothing after it).
        top_k / top_p: truncate the target's law as transformers' warpers do (the output is
        then distributed as sampling the truncated law).
        stream: called once per round with {request index: new tokens}. profile: record
        per-phase times in ``stats.timings``.
        """
        verify = verify or self.verify
        check_top_k_top_p(top_k, top_p)
        if verify not in _VERIFY:
            raise ValueError(f"verify must be one of {_VERIFY}, got {verify!r}")
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        k = self._gamma(gamma)
        policy = length_policy or self.length_policy or FixedLength()
        policy.reset()
        target = self.target
        dev = target.device
        raw = input_ids if isinstance(input_ids, Tensor) else None
        tokens, lengths, _ = prompts_to_right_padded(input_ids, attention_mask)
        tokens, lengths = tokens.to(dev), lengths.to(dev)
        b = tokens.shape[0]
        temp = per_row_temperature(temperature, b, dev)
        if verify == "greedy" and bool((temp > 0).any()):
            raise ValueError("verify='greedy' needs temperature 0 on every row; use 'token' "
                             "or 'block' for sampling")
        seeds = per_row_seed(seed, b, dev)
        eos = token_set(eos_token_id, target.vocab_size, dev)
        longest = int(lengths.max())
        if target.max_positions is not None and longest + max_new_tokens > target.max_positions:
            raise ValueError(f"prompt length {longest} + max_new_tokens {max_new_tokens} exceeds "
                             f"the target's position limit {target.max_positions}")
        stats = GenerationStats(draft_len=k)
        new_tokens: List[List[int]] = [[] for _ in range(b)]
        if max_new_tokens > 0:
            timer = PhaseTimer() if profile else contextlib.nullcontext()
            with timer:
                self._run(tokens, lengths, temp, seeds, eos, max_new_tokens, k, verify, policy,
                          (top_k, top_p), stats, new_tokens, stream)
            if profile:
                stats.timings = timer.exclusive()
        return GenerationOutput(self._sequences(raw, tokens, lengths, new_tokens,
                                                max_new_tokens, pad_token_id, eos),
                                new_tokens, stats)

    def _run(self, tokens, lengths, temp, seeds, eos, max_new, k, verify, policy, warp, stats,
             new_tokens, stream) -> None:
        target, drafter = self.target, self.drafter
        b, dev = tokens.shape[0], tokens.device
        target.reset(b, getattr(drafter, "target_layer_ids", None))
        drafter.reset(b, dev)
        with phase("target_forward"):
            first = target.prefill(tokens, lengths)
        offset = torch.zeros(b, dtype=torch.int64, device=dev)
        with phase("verify_op"):
            anchor = sample_target(truncate_logits(first.logits[:, -1], temp, *warp),
                                   temp, seeds, offset)
        positions = torch.arange(tokens.shape[1], device=dev)[None, :].expand_as(tokens)
        with phase("draft"):
            drafter.update(ContextUpdate(tokens, lengths, positions, first.features))
        rows = torch.arange(b)                                   # request ids, host
        with phase("bookkeeping"):
            anchor_host = anchor.cpu()
            done = self._emit(rows, anchor_host[:, None], torch.ones(b, dtype=torch.int64),
                              eos, max_new, new_tokens, stream)
        round_no = 0
        while True:
            with phase("bookkeeping"):
                keep = (~done).nonzero().flatten()
                if keep.numel() == 0:
                    return
                if keep.numel() < rows.numel():
                    idx = keep.to(dev)
                    rows, anchor, temp, seeds = rows[keep], anchor[idx], temp[idx], seeds[idx]
                    target.select_rows(idx)
                    drafter.select_rows(idx)
                round_no += 1
                check_offsets(round_no)
                offset = torch.full_like(seeds, round_no)
                pos = target.lengths()
                remaining = torch.tensor([max_new - len(new_tokens[r]) for r in rows.tolist()],
                                         dtype=torch.int64, device=dev)
            with phase("draft"):
                block = drafter.draft(anchor, pos, k, temp, seeds, offset)
            with phase("bookkeeping"):
                cap = torch.clamp(remaining - 1, max=k)
                # A draft of -1 (a position whose drafter logits were all masked) and what
                # follows it are never verified.
                cap = torch.minimum(cap, (block.draft_tokens >= 0).long().cumprod(1).sum(1))
                if block.num_valid is not None:
                    cap = torch.minimum(cap, block.num_valid.to(cap))
                ver = policy(block, cap).to(torch.int64)
                width = int(ver.max()) + 1                         # host sync 1
                drafts = block.draft_tokens[:, : width - 1].clamp(min=0)
                block_in = torch.cat([anchor[:, None], drafts], dim=1)
            with phase("target_forward"):
                step = target.forward(block_in, ver + 1)
            with phase("verify_op"):
                logits = truncate_logits(step.logits, temp, *warp)
                if verify == "greedy":
                    res = verify_greedy(logits, drafts, ver)
                else:
                    q = None if block.draft_logits is None else block.draft_logits[:, : width - 1]
                    res = rejection_sample(logits, drafts, q, temp, seeds, offset, ver,
                                           method=verify)
            with phase("bookkeeping"):
                acc_host, out_host = res.accepted.cpu(), res.out_tokens.cpu()  # host sync 2
                target.truncate(pos + res.accepted + 1)
                anchor = res.out_tokens.gather(1, res.accepted[:, None])[:, 0]
                stats.rounds.append(self._round(rows, ver, acc_host, res.accept_flags, k,
                                                block.confidence_logits))
                done = self._emit(rows, out_host, acc_host + 1, eos, max_new, new_tokens,
                                  stream)
            with phase("draft"):
                # The anchor and the accepted drafts are committed; their target features come
                # from this round's forward.
                block_pos = pos[:, None] + torch.arange(width, device=dev)[None, :]
                drafter.update(ContextUpdate(block_in, res.accepted + 1, block_pos,
                                             step.features))

    @staticmethod
    def _round(rows, ver, acc_host, flags, k, conf) -> RoundStats:
        f = torch.full((rows.numel(), k), -1, dtype=torch.int8)
        f[:, : flags.shape[1]] = flags.cpu()
        z = None
        if conf is not None:
            z = conf.float().cpu()
        return RoundStats(rows.clone(), ver.cpu(), acc_host, f, z)

    @staticmethod
    def _emit(rows, out_host, count, eos, max_new, new_tokens, stream) -> Tensor:
        """Append each row's ``count`` first tokens (cut after an EOS and at max_new);
        returns which rows are finished."""
        done = torch.zeros(rows.numel(), dtype=torch.bool)
        eos_list = None if eos is None else set(eos.tolist())
        fresh: Dict[int, List[int]] = {}
        for i, (r, toks) in enumerate(zip(rows.tolist(), out_host.tolist())):
            toks = toks[: int(count[i])]
            if -1 in toks:  # a target row with every logit masked: nothing to emit, stop
                toks = toks[: toks.index(-1)]
                done[i] = True
            if eos_list is not None:
                for j, t in enumerate(toks):
                    if t in eos_list:
                        toks = toks[: j + 1]
                        done[i] = True
                        break
            room = max_new - len(new_tokens[r])
            toks = toks[:room]
            new_tokens[r].extend(toks)
            fresh[r] = toks
            if len(new_tokens[r]) >= max_new:
                done[i] = True
        if stream is not None:
            stream(fresh)
        return done

    @staticmethod
    def _sequences(raw, tokens, lengths, new_tokens, max_new, pad_token_id, eos) -> Tensor:
        pad = pad_token_id if pad_token_id is not None else (
            int(eos[0]) if eos is not None else 0)
        prompt = raw.long() if raw is not None else tokens.cpu()
        if prompt.dim() == 1:
            prompt = prompt[None]
        width = max([len(t) for t in new_tokens] + [0])
        tail = torch.full((prompt.shape[0], width), pad, dtype=torch.int64)
        for i, t in enumerate(new_tokens):
            tail[i, : len(t)] = torch.tensor(t, dtype=torch.int64)
        return torch.cat([prompt.cpu(), tail], dim=1)
