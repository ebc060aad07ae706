"""The requests still running in one ``generate`` call, and dropping the finished ones from
every side at once (design §8).

A row of every per-row tensor here, of the target's cache and of the drafter's state is one
running request; ``rows`` maps it back to the request's index in the call. When requests
finish, :meth:`BatchState.keep` compacts all of them with the same indices, so the three can
never disagree about which row is which.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ..drafters.base import Drafter
from ..targets.base import Target


class BatchState:
    """rows: int64 [R] request indices (host). anchor int64 [R], temperature float32 [R],
    seed int64 [R]: on the target's device."""

    def __init__(self, target: Target, drafter: Drafter, anchor: Tensor, temperature: Tensor,
                 seed: Tensor):
        self.target, self.drafter = target, drafter
        self.rows = torch.arange(anchor.shape[0])
        self.anchor, self.temperature, self.seed = anchor, temperature, seed

    def __len__(self) -> int:
        return self.rows.numel()

    def keep(self, rows: Tensor) -> None:
        """Keep only the rows at ``rows`` (int64 host indices, in that order): this state's
        tensors, the target's cache and the drafter's state together."""
        if rows.numel() == len(self):
            return
        idx = rows.to(self.anchor.device)
        self.rows = self.rows[rows]
        self.anchor, self.temperature, self.seed = (self.anchor[idx], self.temperature[idx],
                                                    self.seed[idx])
        self.target.select_rows(idx)
        self.drafter.select_rows(idx)
