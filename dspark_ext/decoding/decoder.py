"""The speculative decoding loop (design §8), the one place that drives a target and a
drafter; neither knows the other's internals, both are reached through their protocols
(design §11).

A round, for every request still running (:meth:`SpeculativeDecoder._round`):

1. the drafter proposes gamma tokens after the anchor (the last committed token), unless
   the length policy says that no draft would pay this round (``draft_this_round``, the
   scheduler's skip rule): the round is then a plain target step over the anchor;
2. the length policy picks ``num_draft`` per row (at most the cap of :func:`verify_cap`);
3. the target scores ``[anchor, drafts]`` in one forward;
4. the verification op accepts a prefix and samples the correction/bonus token;
5. the target truncates to what was committed; the drafter receives the committed tokens
   with the accepted counts and rolls itself back (design §11); rows that finished (EOS, or
   ``max_new_tokens``) leave the batch on every side at once (:class:`BatchState`).

Host synchronisations per round, whatever gamma and the batch size:

* the verified width ``max(num_draft) + 1`` (it sizes the target's block);
* the verdict: accepted counts and output tokens, in one copy;
* the target's own, if any (:class:`~dspark_ext.targets.HFTarget` reads which cache slots are
  still used, to crop them; :class:`~dspark_ext.targets.KVCache` reads its longest row);
* the drafter's own, if any (the DSpark context cache reads its longest row to grow);
* with statistics recorded (the default): the verified lengths, the flags and the confidence
  logits (:class:`~dspark_ext.decoding.observers.StatsRecorder`);
* with profiling: a device synchronisation at every phase edge (CUDA only).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence, Union

import torch
from torch import Tensor

from ..drafters.base import ContextUpdate, DraftBlock, Drafter
from ..profiling import PhaseTimer, phase
from ..targets.adapt import as_target
from ..targets.base import check_target_layer_ids
from .batch import BatchState
from .emit import Emitter, StreamCallback
from .inputs import (check_offsets, check_token_ids, per_row_seed, per_row_temperature,
                     prompts_to_right_padded, token_set)
from .observers import RoundObserver, StatsRecorder
from .policies import FixedLength
from .stats import GenerationStats
from .verification import first_token, resolve_method, verify_cap, verify_drafts
from .warp import check_top_k_top_p

__all__ = ["GenerationOutput", "SpeculativeDecoder", "as_target"]


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


@dataclass
class _Call:
    """The settings of one ``generate`` call that every round reads."""

    gamma: int
    method: str
    policy: object
    top_k: Optional[int]
    top_p: Optional[float]
    emitter: Emitter
    observers: List[RoundObserver]

    def drafts(self, rows: int) -> bool:
        """Whether this round drafts: a policy may say that no draft would pay (design §6)."""
        ask = getattr(self.policy, "draft_this_round", None)
        return True if ask is None else bool(ask(rows))

    def observe_round(self, drafted: bool, tokens: int, seconds: float) -> None:
        """Tell a policy that measures rounds (``Scheduled(draft_time="measured")``) how the
        last one went."""
        tell = getattr(self.policy, "observe_round", None)
        if tell is not None:
            tell(drafted, tokens, seconds)


class SpeculativeDecoder:
    """Lossless speculative decoding of ``target`` with ``drafter``.

    target: a Target adapter (:class:`~dspark_ext.targets.HFTarget`,
    :class:`~dspark_ext.targets.TorchTarget`) or a transformers causal LM.
    drafter: any :class:`~dspark_ext.drafters.Drafter` (DSpark, DFlash, n-gram, a small LM).
    gamma: draft tokens proposed per round (default: the drafter's ``max_draft``, else 4).
    method: the verification method, "greedy" (T = 0 only), "token" (rejection sampling) or
    "block" (block verification); ``verify=`` is its older name. length_policy: FixedLength
    (default), StaticThreshold or Scheduled.
    """

    def __init__(self, target, drafter: Drafter, *, gamma: Optional[int] = None,
                 method: Optional[str] = None, verify: Optional[str] = None,
                 length_policy=None):
        self.target = as_target(target)
        self.drafter = drafter
        self.gamma = gamma
        self.method = resolve_method(method, verify, "token")
        self.length_policy = length_policy
        self._check_pair()

    @property
    def verify(self) -> str:
        """The verification method (older name of :attr:`method`)."""
        return self.method

    def _check_pair(self) -> None:
        t, d = self.target, self.drafter
        dv = getattr(d, "vocab_size", None)
        if dv is not None and int(dv) != t.vocab_size:
            raise ValueError(f"drafter vocab_size {dv} != target vocab_size {t.vocab_size}")
        ids = getattr(d, "target_layer_ids", None)
        if ids is None:
            return
        check_target_layer_ids(ids, t.num_layers)
        dh = getattr(d, "target_hidden_size", None)
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
                 pad_token_id: Optional[int] = None, method: Optional[str] = None,
                 verify: Optional[str] = None, gamma: Optional[int] = None,
                 length_policy=None, top_k: Optional[int] = None,
                 top_p: Optional[float] = None, stream: Optional[StreamCallback] = None,
                 profile: bool = False, record_stats: bool = True,
                 observers: Sequence[RoundObserver] = ()) -> GenerationOutput:
        """Continue every prompt by up to ``max_new_tokens`` tokens.

        input_ids [B, L] (left or right padded, with ``attention_mask``), [L], or a list of
        token lists; every token id in [0, V). temperature: a number or float [B] (0 = greedy
        row). seed: an int (row b uses seed + b), an int64 tensor [B] (one Philox key per
        request: the same key gives the same tokens whatever batch the request runs in, for
        per-row policies), or None (fresh). eos_token_id: id(s) that end a row (the EOS is
        emitted, nothing after it). method (or its older name verify): "greedy", "token" or
        "block" (default: the decoder's). top_k / top_p: truncate the target's law as
        transformers' warpers do (the output is then distributed as sampling the truncated
        law). stream: called once per round with {request index: new tokens}.
        profile: record per-phase seconds in ``stats.timings``: ``prefill`` (the prompt on
        both sides and the first token), then per round ``draft`` (the drafter, its context
        update included; ``markov`` inside it apart), ``target_forward``, ``verify_op`` and
        ``bookkeeping``. record_stats: keep per-round
        statistics in ``stats`` (host copies every round; off, ``stats`` has no rounds).
        observers: more :class:`~dspark_ext.decoding.observers.RoundObserver` objects,
        called once per round.
        """
        method = resolve_method(method, verify, self.method)
        check_top_k_top_p(top_k, top_p)
        if not isinstance(max_new_tokens, int) or max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
        k = self._gamma(gamma)
        policy = length_policy or self.length_policy or FixedLength()
        policy.reset()
        target = self.target
        dev = target.device
        raw = input_ids if isinstance(input_ids, Tensor) else None
        tokens, lengths, _ = prompts_to_right_padded(input_ids, attention_mask)
        check_token_ids(tokens, lengths, target.vocab_size)
        tokens, lengths = tokens.to(dev), lengths.to(dev)
        b = tokens.shape[0]
        temp = per_row_temperature(temperature, b, dev)
        if method == "greedy" and bool((temp > 0).any()):
            raise ValueError("method 'greedy' (verify='greedy') needs temperature 0 on every "
                             "row; use 'token' or 'block' for sampling")
        seeds = per_row_seed(seed, b, dev)
        eos = token_set(eos_token_id, target.vocab_size, dev)
        longest = int(lengths.max())
        if target.max_positions is not None and longest + max_new_tokens > target.max_positions:
            raise ValueError(f"prompt length {longest} + max_new_tokens {max_new_tokens} exceeds "
                             f"the target's position limit {target.max_positions}")
        recorder = StatsRecorder(k) if record_stats else None
        call = _Call(k, method, policy, top_k, top_p, Emitter(b, max_new_tokens, eos, stream),
                     ([recorder] if recorder else []) + list(observers))
        stats = recorder.stats if recorder else GenerationStats(k)
        if max_new_tokens > 0:
            timer = PhaseTimer() if profile else contextlib.nullcontext()
            with timer:
                self._run(tokens, lengths, temp, seeds, call)
            if profile:
                stats.timings = timer.exclusive()
        new_tokens = call.emitter.new_tokens
        return GenerationOutput(self._sequences(raw, tokens, lengths, new_tokens,
                                                max_new_tokens, pad_token_id, eos),
                                new_tokens, stats)

    def _run(self, tokens: Tensor, lengths: Tensor, temp: Tensor, seeds: Tensor,
             call: _Call) -> None:
        state, done = self._start(tokens, lengths, temp, seeds, call)
        round_no = 0
        while True:
            with phase("bookkeeping"):
                alive = (~done).nonzero().flatten()
                if alive.numel() == 0:
                    return
                state.keep(alive)
                round_no += 1
                check_offsets(round_no)
            started = time.perf_counter()
            done, drafted, emitted = self._round(state, call,
                                                 torch.full_like(state.seed, round_no))
            call.observe_round(drafted, emitted, time.perf_counter() - started)

    def _start(self, tokens, lengths, temp, seeds, call: _Call):
        """Prefill both sides and sample the first anchor; returns the batch and which rows
        are already done (host sync: the first tokens)."""
        target, drafter = self.target, self.drafter
        b, dev = tokens.shape[0], tokens.device
        target.reset(b, getattr(drafter, "target_layer_ids", None))
        drafter.reset(b, dev)
        # The prompt's cost is its own phase: the rounds' phases are per-round costs.
        with phase("prefill"):
            first = target.prefill(tokens, lengths)
            anchor = first_token(first.logits[:, -1], temp, seeds, call.top_k, call.top_p)
            positions = torch.arange(tokens.shape[1], device=dev)[None, :].expand_as(tokens)
            drafter.update(ContextUpdate(tokens, lengths, positions, first.features))
        state = BatchState(target, drafter, anchor, temp, seeds)
        with phase("bookkeeping"):
            done = call.emitter.emit(state.rows, anchor.cpu()[:, None],
                                     torch.ones(b, dtype=torch.int64))
        return state, done

    def _round(self, s: BatchState, call: _Call, offset: Tensor):
        """One round over the running rows; returns which of them finished (bool, host),
        whether it drafted, and the tokens it verified (accepted + 1 per row)."""
        target, drafter = self.target, self.drafter
        dev = s.anchor.device
        with phase("bookkeeping"):
            pos = target.lengths()
            room = call.emitter.room(s.rows).to(dev)
            drafting = call.drafts(len(s))
        if drafting:
            with phase("draft"):
                block = drafter.draft(s.anchor, pos, call.gamma, s.temperature, s.seed, offset)
            with phase("bookkeeping"):
                num_draft = call.policy(block, verify_cap(block, room, call.gamma)).to(
                    torch.int64)
                width = int(num_draft.max()) + 1                       # host sync: the width
                drafts = block.draft_tokens[:, : width - 1].clamp(min=0)
                block_in = torch.cat([s.anchor[:, None], drafts], dim=1)
        else:  # the policy expects no draft to pay: a plain target step (design §6)
            with phase("bookkeeping"):
                block = DraftBlock(s.anchor.new_zeros((len(s), 0)))
                num_draft = torch.zeros_like(s.anchor)
                width, drafts, block_in = 1, block.draft_tokens, s.anchor[:, None]
        with phase("target_forward"):
            step = target.forward(block_in, num_draft + 1)
        with phase("verify_op"):
            res = verify_drafts(step.logits, drafts, block, num_draft, s.temperature, s.seed,
                                offset, call.method, call.top_k, call.top_p)
        with phase("bookkeeping"):
            verdict = torch.cat([res.accepted[:, None], res.out_tokens], dim=1).cpu()  # sync
            accepted, out_tokens = verdict[:, 0], verdict[:, 1:]
            target.truncate(pos + res.accepted + 1)
            s.anchor = res.out_tokens.gather(1, res.accepted[:, None])[:, 0]
            for observer in call.observers:
                observer.on_round(s.rows, num_draft, accepted, res, block)
            done = call.emitter.emit(s.rows, out_tokens, accepted + 1)
        with phase("draft"):
            # The anchor and the accepted drafts are committed; their target features come
            # from this round's forward.
            block_pos = pos[:, None] + torch.arange(width, device=dev)[None, :]
            drafter.update(ContextUpdate(block_in, res.accepted + 1, block_pos, step.features,
                                         accepted=res.accepted if drafting else None))
        return done, drafting, int(accepted.sum()) + len(s)

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
