"""Which batches the dspark sampler hands back to vLLM's own ``RejectionSampler.forward``.

The dspark path honours temperature (greedy rows mixed in), seeds, top-k / top-p, draft
probabilities or one-hot (n-gram) drafts, bonus tokens and any ``-inf`` mask already in the
logits (structured-output bitmasks are applied to the logits before the sampler runs). A
batch that needs anything else gets vLLM's sampler, never a silently different law; each
reason is logged once per process and counted in ``DsparkRejectionSampler.stats``.
"""
from __future__ import annotations

import logging
from typing import Optional

import torch

logger = logging.getLogger("vllm.dspark_ext")
_logged: set = set()

# vLLM's built-in logits processors and the attribute that says whether any request of the
# batch uses them (vllm/v1/sample/logits_processor/builtin.py).
_BUILTIN_ACTIVITY = {
    "MinTokensLogitsProcessor": "min_toks",
    "LogitBiasLogitsProcessor": "biases",
    "MinPLogitsProcessor": "min_p_count",
}


def _logits_processor_reason(sampling_metadata) -> Optional[str]:
    procs = getattr(sampling_metadata, "logitsprocs", None)
    if procs is None:
        return None
    for proc in list(procs.argmax_invariant) + list(procs.non_argmax_invariant):
        name = type(proc).__name__
        attr = _BUILTIN_ACTIVITY.get(name)
        if attr is None:
            return f"custom logits processor {name}"
        if getattr(proc, attr, None):
            return f"logits processor {name} (min_tokens / logit_bias / min_p)"
    return None


def sampling_reason(sampler, sampling_metadata) -> Optional[str]:
    """A sampling option of the batch that the dspark path does not implement, or None.
    Host-side checks only."""
    sm = sampling_metadata
    if getattr(sampler, "synthetic_mode", False):
        return "synthetic acceptance (rejection_sample_method='synthetic')"
    if sm.max_num_logprobs is not None or getattr(sm, "logprob_token_ids", None):
        return "logprobs requested"
    if not sm.no_penalties:
        return "repetition / frequency / presence penalties"
    if sm.bad_words_token_ids:
        return "bad_words"
    if sm.allowed_token_ids_mask is not None:
        return "allowed_token_ids"
    holder = getattr(sm, "thinking_budget_state_holder", None)
    if holder is not None and holder.has_tracked_requests():
        return "thinking token budget"
    return _logits_processor_reason(sm)


def device_reason(logits: torch.Tensor) -> Optional[str]:
    """None when this dspark_ext build has kernels for the logits' device."""
    if logits.device.type == "cpu":
        return None
    if logits.device.type == "cuda":
        import dspark_ext

        if dspark_ext.build_info().get("cuda_enabled"):
            return None
        return "CUDA logits but dspark_ext was built without CUDA kernels"
    return f"device {logits.device.type} has no dspark_ext kernels"


def draft_reason(draft_token_ids: torch.Tensor) -> Optional[str]:
    """Placeholder draft ids (-1: vLLM's scheduler pads drafts that a structured-output grammar
    rejected) must be rejected outright, which the ragged ops cannot express; such batches go
    to vLLM. One device-to-host read of a bool (a synchronisation on CUDA)."""
    if draft_token_ids.numel() and bool((draft_token_ids < 0).any()):
        return "placeholder (-1) draft tokens"
    return None


def log_once(reason: str) -> None:
    if reason not in _logged:
        _logged.add(reason)
        logger.warning("dspark_ext: %s; this batch (and any later one with it) is verified by "
                       "vLLM's own rejection sampler", reason)
