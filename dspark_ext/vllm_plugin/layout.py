"""vLLM's flattened speculative-decoding inputs -> the ragged layout of dspark's ops.

What vLLM's v1 model runner hands ``RejectionSampler.forward`` (``SpecDecodeMetadata``,
``vllm/v1/spec_decode/metadata.py``, built by ``GPUModelRunner._calc_spec_decode_metadata``):

* ``logits`` ``[N + B, V]``: request r's ``l_r`` draft-position rows then its bonus row, the
  requests one after the other (``logits_indices`` gathered them in that order). This is
  exactly dspark's ragged ``target_logits [T + B, V]``, so it is passed as it is.
* ``draft_token_ids`` int32 ``[N]`` (flattened, request-major); ``num_draft_tokens`` (host
  list, ``l_r``, zeros allowed); ``cu_num_draft_tokens`` int32 ``[B]``, the *inclusive*
  cumulative sums (no leading 0); ``max_spec_len = max(l_r)``.
* ``draft_probs`` float32 ``[N, V]`` (the law each draft token was sampled from) or ``None``
  (n-gram and other deterministic drafters: one-hot drafts).

dspark's ragged ops take int64 ``cu_num_draft [B + 1]`` with a leading 0, int64 draft ids,
and draft *logits* at the request's temperature: the op computes ``q = softmax(d / T)``.
"""
from __future__ import annotations

from typing import Optional

import torch

# Logit dtypes the dspark kernels read directly; anything else is converted to float32.
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def ragged_offsets(cu_num_draft_tokens: torch.Tensor) -> torch.Tensor:
    """vLLM's inclusive cumulative draft counts ``[B]`` -> dspark's ``cu_num_draft [B + 1]``
    (int64, leading 0). On the device, without a host synchronisation."""
    cu = cu_num_draft_tokens.to(torch.int64)
    return torch.cat([cu.new_zeros(1), cu])


def draft_counts(cu: torch.Tensor) -> torch.Tensor:
    """``l_r`` int64 ``[B]`` from dspark's offsets ``[B + 1]`` (on the device)."""
    return cu[1:] - cu[:-1]


def expand_to_rows(per_request: torch.Tensor, counts: torch.Tensor, total: int) -> torch.Tensor:
    """Repeat request r's value ``counts[r]`` times (``total`` = sum of counts, known on the
    host, so no synchronisation)."""
    return torch.repeat_interleave(per_request, counts, output_size=total)


def target_logits(logits: torch.Tensor) -> torch.Tensor:
    """vLLM's ``logits [N + B, V]`` as the ops read them: a kernel dtype, contiguous rows."""
    if logits.dtype not in KERNEL_DTYPES:
        logits = logits.to(torch.float32)
    if logits.stride(-1) != 1:
        logits = logits.contiguous()
    return logits


def draft_logits_from_probs(draft_probs: Optional[torch.Tensor], temperature: torch.Tensor,
                            counts: torch.Tensor,
                            workspace: Optional[dict] = None) -> Optional[torch.Tensor]:
    """Draft logits ``d = log(q) * T`` whose ``softmax(d / T)`` inside the op is the drafter's
    law ``q`` (per request temperature ``temperature [B]``, expanded over its ``l_r`` rows).

    ``log(0) = -inf`` is a masked logit, i.e. probability zero, as it should be. Rows of greedy
    requests (``T = 0``) are not read by the op; they get the factor 1 so that no NaN
    (``-inf * 0``) is ever formed. ``None`` (one-hot drafts) stays ``None``. The logits are
    written into ``workspace["draft"]`` (grown as needed and kept by the caller), so a serving
    loop does not allocate, and page-fault, a fresh ``[N, V]`` tensor every step.
    """
    if draft_probs is None:
        return None
    probs = draft_probs if draft_probs.dtype == torch.float32 else draft_probs.float()
    out = None
    if workspace is not None:
        buf = workspace.get("draft")
        if buf is None or buf.device != probs.device or buf.numel() < probs.numel():
            buf = workspace["draft"] = torch.empty(probs.numel(), device=probs.device)
        out = buf[: probs.numel()].view(probs.shape)
    logits = torch.log(probs, out=out)
    scale = torch.where(temperature > 0, temperature, torch.ones_like(temperature))
    # On the host (CPU tensors, no synchronisation) skip the pass when every factor is 1.
    if scale.device.type != "cpu" or not bool((scale == 1).all()):
        rows = expand_to_rows(scale.to(torch.float32), counts, probs.shape[0])
        logits.mul_(rows.unsqueeze(-1))
    return logits


def vllm_output(out_tokens: torch.Tensor) -> torch.Tensor:
    """dspark's ``out_tokens`` int64 ``[B, max_spec_len + 1]`` (-1 padded) -> vLLM's
    ``SamplerOutput.sampled_token_ids`` (int32, -1 = ``PLACEHOLDER_TOKEN_ID`` padded)."""
    return out_tokens.to(torch.int32)
