"""vLLM's own input objects for the sampler-level tests: SpecDecodeMetadata and
SamplingMetadata built the way vLLM's v1 model runner builds them."""
import numpy as np
import torch
from vllm.v1.sample.logits_processor import LogitsProcessors
from vllm.v1.sample.metadata import SamplingMetadata
from vllm.v1.spec_decode.metadata import SpecDecodeMetadata


def spec_metadata(drafts):
    """SpecDecodeMetadata for per-request draft lists (GPUModelRunner._calc_spec_decode_metadata:
    request r's l_r target rows then its bonus row, requests one after the other)."""
    num_draft = np.array([len(d) for d in drafts], dtype=np.int32)
    num_sampled = num_draft + 1
    cu_sampled = np.cumsum(num_sampled, dtype=np.int32)
    starts = cu_sampled - num_sampled
    target_idx = np.concatenate([s + np.arange(n) for s, n in zip(starts, num_draft)]
                                + [np.zeros(0, dtype=np.int64)]).astype(np.int32)
    flat = [t for d in drafts for t in d]
    return SpecDecodeMetadata(
        draft_token_ids=torch.tensor(flat, dtype=torch.int32),
        num_draft_tokens=num_draft.tolist(),
        cu_num_draft_tokens=torch.from_numpy(np.cumsum(num_draft, dtype=np.int32)),
        cu_num_sampled_tokens=torch.from_numpy(cu_sampled),
        target_logits_indices=torch.from_numpy(target_idx),
        bonus_logits_indices=torch.from_numpy((cu_sampled - 1).astype(np.int32)),
        logits_indices=torch.arange(int(cu_sampled[-1]), dtype=torch.int32),
    )


def sampling_metadata(temperature, top_k=None, top_p=None, generators=None, **overrides):
    """SamplingMetadata as InputBatch._make_sampling_metadata fills it (greedy rows have
    temperature 0; top_k / top_p are None when no request uses them)."""
    temperature = torch.as_tensor(temperature, dtype=torch.float32)
    batch = temperature.numel()
    all_greedy = bool((temperature == 0).all())
    fields = dict(
        temperature=None if all_greedy else temperature,
        all_greedy=all_greedy,
        all_random=bool((temperature > 0).all()),
        top_p=None if top_p is None else torch.as_tensor(top_p, dtype=torch.float32),
        top_k=None if top_k is None else torch.as_tensor(top_k, dtype=torch.int32),
        generators=generators or {},
        max_num_logprobs=None,
        no_penalties=True,
        prompt_token_ids=None,
        frequency_penalties=torch.zeros(batch),
        presence_penalties=torch.zeros(batch),
        repetition_penalties=torch.ones(batch),
        output_token_ids=[],
        allowed_token_ids_mask=None,
        bad_words_token_ids={},
        logitsprocs=LogitsProcessors(),
    )
    fields.update(overrides)
    return SamplingMetadata(**fields)


def make_sampler(cls):
    """A rejection sampler as GPUModelRunner builds it (no speculative config needed here)."""
    from vllm.v1.sample.sampler import Sampler

    return cls(Sampler(), None, torch.device("cpu"))
