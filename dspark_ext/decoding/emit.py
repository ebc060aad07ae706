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
    """The new tokens of every request of one call (``new_tokens[i]``: request i's)."""

    def __init__(self, batch: int, max_new_tokens: int, eos: Optional[Tensor],
                 stream: Optional[StreamCallback]):
        self.new_tokens: List[List[int]] = [[] for _ in range(batch)]
        self.max_new = max_new_tokens
        self.eos = None if eos is None else set(eos.tolist())
        self.stream = stream

    def room(self, rows: Tensor) -> List[int]:
        """How many tokens each of ``rows`` (request indices) may still emit."""
        return [self.max_new - len(self.new_tokens[r]) for r in rows.tolist()]

    def emit(self, rows: Tensor, tokens: Tensor, count: Tensor) -> Tensor:
        """Append row i's first ``count[i]`` of ``tokens[i]`` (host tensors) to request
        ``rows[i]``, cut after an EOS and at ``max_new_tokens``; returns which rows finished
        (bool [R], host)."""
        done = torch.zeros(rows.numel(), dtype=torch.bool)
        fresh: Dict[int, List[int]] = {}
        for i, (r, toks) in enumerate(zip(rows.tolist(), tokens.tolist())):
            toks = toks[: int(count[i])]
            if -1 in toks:  # a target row with every logit masked: nothing to emit, stop
                toks = toks[: toks.index(-1)]
                done[i] = True
            if self.eos is not None:
                for j, t in enumerate(toks):
                    if t in self.eos:
                        toks = toks[: j + 1]
                        done[i] = True
                        break
            toks = toks[: self.max_new - len(self.new_tokens[r])]
            self.new_tokens[r].extend(toks)
            fresh[r] = toks
            if len(self.new_tokens[r]) >= self.max_new:
                done[i] = True
        if self.stream is not None:
            self.stream(fresh)
        return done
