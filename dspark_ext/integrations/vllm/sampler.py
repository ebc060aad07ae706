"""The replacement for vLLM's v1 ``RejectionSampler``: verification on dspark's ragged ops.

``DsparkRejectionSampler.forward`` takes vLLM's own arguments (``SpecDecodeMetadata``, draft
probabilities or ``None``, target logits ``[N + B, V]``, ``SamplingMetadata``) and returns
vLLM's ``SamplerOutput`` (``sampled_token_ids`` int32 ``[B, max_spec_len + 1]``, -1 padded).
Where vLLM's sampler runs its bonus-token sampler, a softmax, an exponential race per request
and three kernels, one dspark op does everything from the logits: greedy rows by
``verify_greedy_ragged`` (all-greedy batches) or inside ``rejection_sample_ragged`` (mixed
batches), the bonus token from the bonus row with the same temperature and top-k / top-p as
the draft positions. Batches with an option it does not implement go to vLLM's
``forward`` (:mod:`.fallback`).
"""
from __future__ import annotations

from collections import Counter

import torch
from vllm.v1.outputs import SamplerOutput
from vllm.v1.sample.rejection_sampler import RejectionSampler

from . import fallback
from .layout import draft_counts, draft_inputs, target_logits, vllm_output
from .masking import mask_top_k_top_p, needs_masking
from .seeds import philox_keys


def verify(metadata, draft_probs, logits, sampling_metadata, step: int = 0) -> torch.Tensor:
    """vLLM's verification step on dspark's ops: ``sampled_token_ids`` int32
    ``[B, max_spec_len + 1]`` (-1 padded). ``step`` advances every call (unseeded offsets).
    vLLM's draft probabilities go to the op as they are (``draft_probs``), and so do its int32
    draft ids and inclusive cumulative counts (``cu_inclusive``)."""
    max_len = int(metadata.max_spec_len)
    cu = metadata.cu_num_draft_tokens
    drafts = metadata.draft_token_ids
    rows = target_logits(logits)
    if sampling_metadata.all_greedy:
        out = torch.ops.dspark.verify_greedy_ragged(rows, drafts, cu, max_len, True)
        return vllm_output(out[1])
    temperature = sampling_metadata.temperature
    if temperature.dtype != torch.float32:
        temperature = temperature.to(torch.float32)
    if needs_masking(sampling_metadata):
        rows, temperature = mask_top_k_top_p(rows, temperature, sampling_metadata,
                                             draft_counts(cu) + 1)
    rows, probs = draft_inputs(rows, draft_probs)
    seed, offset = philox_keys(sampling_metadata.generators, cu.shape[0], step, rows.device)
    out = torch.ops.dspark.rejection_sample_ragged(rows, drafts, None, cu, max_len, temperature,
                                                   seed, offset, False, draft_probs=probs,
                                                   cu_inclusive=True)
    return vllm_output(out[1])


class DsparkRejectionSampler(RejectionSampler):
    """vLLM's ``RejectionSampler`` with ``forward`` on dspark's ops (same constructor).

    ``stats`` counts the batches verified by dspark (``"dspark"``) and those handed to vLLM
    (``"fallback: <reason>"``).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.step = 0
        self.stats: Counter = Counter()

    def unsupported_reason(self, metadata, draft_probs, logits, sampling_metadata):
        return (fallback.sampling_reason(self, sampling_metadata)
                or fallback.device_reason(logits)
                or fallback.draft_reason(metadata.draft_token_ids))

    def forward(self, metadata, draft_probs, logits, sampling_metadata) -> SamplerOutput:
        self.step += 1
        reason = self.unsupported_reason(metadata, draft_probs, logits, sampling_metadata)
        if reason is not None:
            fallback.log_once(reason)
            self.stats[f"fallback: {reason}"] += 1
            return super().forward(metadata, draft_probs, logits, sampling_metadata)
        self.stats["dspark"] += 1
        tokens = verify(metadata, draft_probs, logits, sampling_metadata, self.step)
        return SamplerOutput(sampled_token_ids=tokens, logprobs_tensors=None)
