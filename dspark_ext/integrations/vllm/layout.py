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

dspark's ragged ops read vLLM's int32 ``cu_num_draft_tokens`` as they are (``cu_inclusive``:
the inclusive ends [B]) and its int32 draft ids, with no conversion pass. vLLM's
``draft_probs`` pass straight through as the op's ``draft_probs``: they are
``softmax(draft_logits / T)`` in float32 (``compute_probs_and_sample_next_token`` in
``vllm/v1/spec_decode/llm_base_proposer.py``), the law the drafts were sampled from, already
at the request's temperature (greedy requests' rows at T = 1, which the op does not read).
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch

# Logit dtypes the dspark kernels read directly; anything else is converted to float32.
KERNEL_DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def draft_counts(cu_num_draft_tokens: torch.Tensor) -> torch.Tensor:
    """``l_r`` ``[B]`` (int64) from vLLM's inclusive cumulative draft counts ``[B]``, on the
    device, without a host synchronisation. Only the top-k / top-p masking needs them; the
    ops read the cumulative counts themselves."""
    return torch.diff(cu_num_draft_tokens.to(torch.int64),
                      prepend=cu_num_draft_tokens.new_zeros(1, dtype=torch.int64))


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


def draft_inputs(rows: torch.Tensor, draft_probs: Optional[torch.Tensor]
                 ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``(target rows, draft probabilities)`` in one kernel dtype, as the op needs them.

    vLLM's ``draft_probs`` ``[N, V]`` (or ``None``: one-hot drafts) are used as they are, with
    no conversion to logits and no pass over them. The op wants both in the same dtype: when
    they differ (e.g. bfloat16 logits next to vLLM's float32 probabilities) both become
    float32, as vLLM's own sampler does with the target logits; probabilities are never
    rounded to a narrower dtype. A non-contiguous vocabulary dimension is made contiguous.
    """
    if draft_probs is None:
        return rows, None
    if draft_probs.dtype != rows.dtype:
        rows = rows.to(torch.float32)
        draft_probs = draft_probs.to(torch.float32)
    if draft_probs.stride(-1) != 1:
        draft_probs = draft_probs.contiguous()
    return rows, draft_probs


def vllm_output(out_tokens: torch.Tensor) -> torch.Tensor:
    """dspark's ``out_tokens`` int64 ``[B, max_spec_len + 1]`` (-1 padded) -> vLLM's
    ``SamplerOutput.sampled_token_ids`` (int32, -1 = ``PLACEHOLDER_TOKEN_ID`` padded)."""
    return out_tokens.to(torch.int32)
