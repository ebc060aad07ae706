"""Normalising ``generate`` inputs: prompts (left- or right-padded, or lists of ids) to the
right-padded ``(tokens, lengths)`` form the targets and drafters take, and per-row sampling
parameters to tensors. Every check names the argument and what was expected."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from ..ops.sampling import MAX_OFFSET


def prompts_to_right_padded(input_ids, attention_mask: Optional[Tensor]
                            ) -> Tuple[Tensor, Tensor, Tensor]:
    """-> (tokens [B, L] right-padded, lengths [B], start [B]: column of each row's first
    token in ``input_ids``)."""
    if isinstance(input_ids, (list, tuple)):
        if attention_mask is not None:
            raise ValueError("attention_mask goes with a padded input_ids tensor, not a list")
        rows = [list(map(int, r)) for r in input_ids]
        width = max((len(r) for r in rows), default=0)
        input_ids = torch.zeros((len(rows), width), dtype=torch.int64)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.int64)
        for i, r in enumerate(rows):
            input_ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
            attention_mask[i, : len(r)] = 1
    if not isinstance(input_ids, Tensor):
        raise TypeError(f"input_ids must be a tensor or a list of token lists, got "
                        f"{type(input_ids).__name__}")
    if input_ids.dim() == 1:
        input_ids = input_ids[None]
        attention_mask = None if attention_mask is None else attention_mask.reshape(1, -1)
    if input_ids.dim() != 2 or input_ids.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"input_ids must be an integer tensor [B, L], got "
                         f"{tuple(input_ids.shape)} {input_ids.dtype}")
    b, n = input_ids.shape
    if b == 0:
        raise ValueError("input_ids holds no prompts (batch size 0)")
    input_ids = input_ids.long()
    if attention_mask is None:
        mask = torch.ones_like(input_ids, dtype=torch.bool)
    else:
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask must have input_ids' shape {tuple(input_ids.shape)}"
                             f", got {tuple(attention_mask.shape)}")
        mask = attention_mask.to(device=input_ids.device) != 0
    lengths = mask.sum(1)
    empty = (lengths == 0).nonzero().flatten().tolist()
    if n == 0 or empty:
        raise ValueError(f"prompt rows {empty if n else list(range(b))} have no tokens after "
                         "padding: every prompt needs at least one token")
    start = mask.long().argmax(1)
    col = torch.arange(n, device=input_ids.device)[None, :]
    run = (col >= start[:, None]) & (col < (start + lengths)[:, None])
    if not bool((run == mask).all()):
        bad = (run != mask).any(1).nonzero().flatten().tolist()
        raise ValueError(f"attention_mask rows {bad} are not one contiguous run of tokens "
                         "(left or right padding only)")
    src = (col + start[:, None]).clamp(max=n - 1)
    tokens = torch.where(col < lengths[:, None], input_ids.gather(1, src), 0)
    return tokens, lengths, start


def check_token_ids(tokens: Tensor, lengths: Tensor, vocab_size: int) -> None:
    """Every prompt token (padding excluded) must be an id in [0, vocab_size)."""
    live = torch.arange(tokens.shape[1], device=tokens.device)[None, :] < lengths[:, None]
    bad = live & ((tokens < 0) | (tokens >= vocab_size))
    if bool(bad.any()):
        row, col = (int(i) for i in bad.nonzero()[0])
        raise ValueError(f"input_ids row {row} holds token id {int(tokens[row, col])} (at its "
                         f"token {col}), outside the target's vocabulary [0, {vocab_size})")


def per_row_temperature(temperature: Union[float, Tensor], batch: int,
                        device: torch.device) -> Tensor:
    t = torch.as_tensor(temperature, dtype=torch.float32)
    if t.dim() == 0:
        t = t.expand(batch)
    if t.shape != (batch,):
        raise ValueError(f"temperature must be a number or a tensor [{batch}], got shape "
                         f"{tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"temperature must be finite and >= 0, got {t.tolist()}")
    return t.to(device).contiguous()


def per_row_seed(seed: Union[int, Tensor, None], batch: int, device: torch.device) -> Tensor:
    """An int gives row b the seed ``seed + b`` (independent streams); a tensor [B] is used
    as is (so a request keeps its stream whatever batch it runs in)."""
    if seed is None:
        seed = int(torch.randint(0, 2 ** 62, ()).item())
    if isinstance(seed, Tensor):
        if seed.shape != (batch,) or seed.dtype != torch.int64:
            raise ValueError(f"seed must be an int or an int64 tensor [{batch}], got "
                             f"{tuple(seed.shape)} {seed.dtype}")
        return seed.to(device)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int or an int64 tensor, got {type(seed).__name__}")
    if not -(1 << 63) <= seed <= (1 << 63) - batch:
        raise ValueError(f"seed must fit in int64 (row b uses seed + b, b < {batch}), got {seed}")
    return seed + torch.arange(batch, dtype=torch.int64, device=device)


def token_set(eos_token_id: Union[None, int, Sequence[int], Tensor], vocab: int,
              device: torch.device) -> Optional[Tensor]:
    if eos_token_id is None:
        return None
    ids = torch.as_tensor(eos_token_id, dtype=torch.int64).flatten()
    if ids.numel() == 0:
        return None
    if bool(((ids < 0) | (ids >= vocab)).any()):
        raise ValueError(f"eos_token_id {ids.tolist()} outside the vocabulary [0, {vocab})")
    return ids.to(device)


def check_offsets(rounds: int) -> None:
    if rounds >= MAX_OFFSET:
        raise ValueError(f"more than {MAX_OFFSET} rounds: the Philox offsets would overflow")
