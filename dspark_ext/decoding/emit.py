"""Appending verified tokens to each request's output (design §8.4): an accepted EOS ends the
request with the EOS as its last token, ``max_new_tokens`` cuts the round, a target row
whose logits were all masked (token -1) ends it with nothing more; the stream callback sees
exactly the tokens appended, once per round."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import torch
from torch import Tensor

StreamCallback = Callable[[Dict[int, List[int]]], None]


class Emitter:
    """The new tokens of every request of one call (``new_tokens[i]``: request i's).

    Where each row's round ends (its count, the first -1, the first EOS, the room left) is
    found with tensor ops over the whole round at once; the only per-row Python left is
    appending the kept slice to the request's list."""

    def __init__(self, batch: int, max_new_tokens: int, eos: Optional[Tensor],
                 stream: Optional[StreamCallback]):
        self.new_tokens: List[List[int]] = [[] for _ in range(batch)]
        self.max_new = max_new_tokens
        self.eos = None if eos is None else eos.to("cpu", torch.int64)
        self.stream = stream
        self._emitted = torch.zeros(batch, dtype=torch.int64)  # len(new_tokens[i]), host

    def room(self, rows: Tensor) -> Tensor:
        """int64 [R] (host): how many tokens each of ``rows`` (request indices) may still
        emit."""
        return self.max_new - self._emitted[rows]

    def emit(self, rows: Tensor, tokens: Tensor, count: Tensor) -> Tensor:
        """Append row i's first ``count[i]`` of ``tokens[i]`` (host tensors) to request
        ``rows[i]``, cut after an EOS and at ``max_new_tokens``; returns which rows finished
        (bool [R], host)."""
        width = tokens.shape[1]
        step = torch.arange(width)[None, :]
        # A target row with every logit masked (-1): nothing from it on, and the row stops.
        masked = (tokens < 0) & (step < count[:, None])
        first_masked = torch.where(masked, step, width).amin(1) if width else count
        keep = torch.minimum(count, first_masked)
        stop = first_masked < count
        if self.eos is not None and width:
            hit = torch.isin(tokens, self.eos) & (step < keep[:, None])
            first_eos = torch.where(hit, step, width).amin(1)
            stop |= first_eos < keep
            keep = torch.minimum(keep, first_eos + 1)
        keep = torch.minimum(keep, self.room(rows))
        self._emitted[rows] += keep
        done = stop | (self._emitted[rows] >= self.max_new)
        fresh: Dict[int, List[int]] = {}
        for r, toks, k in zip(rows.tolist(), tokens.tolist(), keep.tolist()):
            kept = toks[:k]
            self.new_tokens[r].extend(kept)
            fresh[r] = kept
        if self.stream is not None:
            self.stream(fresh)
        return done
