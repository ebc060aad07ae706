"""One verification step of the round (design §3, §8): the target's logits, truncated to
the law being sampled (top-k / top-p), against the drafts, by the chosen method; plus the
first token after the prompt and the per-row cap on what may be verified."""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from ..drafters.base import DraftBlock
from ..ops import VerifyResult, rejection_sample, verify_greedy
from ..ops.sampling import sample_target
from .warp import truncate_logits

METHODS = ("greedy", "token", "block")


def resolve_method(method: Optional[str], verify: Optional[str], default: str) -> str:
    """The verification method from ``method`` or its older name ``verify`` (design §13)."""
    if method is not None and verify is not None and method != verify:
        raise ValueError(f"pass the verification method once: method={method!r} and its older "
                         f"name verify={verify!r} disagree")
    m = method or verify or default
    if m not in METHODS:
        raise ValueError(f"method (verify) must be one of {METHODS}, got {m!r}")
    return m


def first_token(logits: Tensor, temperature: Tensor, seed: Tensor, top_k: Optional[int],
                top_p: Optional[float]) -> Tensor:
    """The first anchor: one token per row from the target's logits after the prompt [B, V],
    on the target stream at offset 0 (the verification op with no drafts)."""
    offset = torch.zeros_like(seed)
    return sample_target(truncate_logits(logits, temperature, top_k, top_p), temperature, seed,
                         offset)


def verify_cap(block: DraftBlock, room: Tensor, gamma: int) -> Tensor:
    """int64 [R]: the most drafts each row may verify: gamma, one less than the tokens it may
    still emit, the drafter's own ``num_valid``, and never a -1 draft (a position whose
    drafter logits were all masked) or what follows it."""
    cap = torch.clamp(room - 1, max=gamma)
    cap = torch.minimum(cap, (block.draft_tokens >= 0).long().cumprod(1).sum(1))
    if block.num_valid is not None:
        cap = torch.minimum(cap, block.num_valid.to(cap))
    return cap


def verify_drafts(logits: Tensor, drafts: Tensor, block: DraftBlock, num_draft: Tensor,
                  temperature: Tensor, seed: Tensor, offset: Tensor, method: str,
                  top_k: Optional[int], top_p: Optional[float]) -> VerifyResult:
    """logits [R, W, V] of the target over [anchor, drafts] (W = drafts' width + 1), drafts
    int64 [R, W - 1], num_draft int64 [R] -> the verdict of every row."""
    logits = truncate_logits(logits, temperature, top_k, top_p)
    if method == "greedy":
        return verify_greedy(logits, drafts, num_draft)
    q = None if block.draft_logits is None else block.draft_logits[:, : drafts.shape[1]]
    if q is not None and q.dtype != logits.dtype:  # e.g. a bf16 drafter next to an fp32 target
        q = q.to(logits.dtype)
    ids = None if q is None or block.draft_ids is None else block.draft_ids[:, : drafts.shape[1]]
    return rejection_sample(logits, drafts, q, temperature, seed, offset, num_draft,
                            method=method, draft_ids=ids)
