"""The pure-PyTorch ground truth of every op and model piece (design §9), one module per op
family; the tests compare the kernels and the drafter against it.

* :mod:`.philox` -- Philox4x32-10 and the stream layout (design §2);
* :mod:`.laws` -- the per-element math of verification and the exact target law (§3);
* :mod:`.verify` -- ``verify_greedy`` / ``rejection_sample`` (padded and ragged), request by
  request, decision for decision as ``csrc/core/verify_row.h`` (§3);
* :mod:`.markov` -- ``markov_sample``, the Markov-head drafting step (§4);
* :mod:`.schedule` -- the prefix scheduler (§6);
* :mod:`.drafter` -- the DSpark/DFlash drafter's context, backbone and draft (§4, §7).

Everything here is slow and readable (float64, Python loops over requests). This package
names every op's reference, so it is the one place to find the ground truth.
"""
from .drafter import ReferenceDraft, reference_backbone, reference_context_kv, reference_draft
from .laws import draft_probs_law, masked_scaled, target_law, verify_masked_scaled, verify_scale
from .markov import MarkovReference, markov_sample
from .philox import (PURPOSE_ACCEPT, PURPOSE_DRAFT, PURPOSE_RESIDUAL, philox4x32_10, rng_words,
                     uniform_from_words, uniforms)
from .schedule import schedule_async, schedule_capacity, schedule_causal, schedule_global
from .verify import (VerifyResult, rejection_sample, rejection_sample_ragged, verify_greedy,
                     verify_greedy_ragged)

__all__ = ["MarkovReference", "PURPOSE_ACCEPT", "PURPOSE_DRAFT", "PURPOSE_RESIDUAL",
           "ReferenceDraft", "VerifyResult", "draft_probs_law", "markov_sample", "masked_scaled",
           "philox4x32_10", "reference_backbone", "reference_context_kv", "reference_draft",
           "rejection_sample", "rejection_sample_ragged", "rng_words", "schedule_async",
           "schedule_capacity", "schedule_causal", "schedule_global", "target_law",
           "uniform_from_words", "uniforms", "verify_greedy", "verify_greedy_ragged",
           "verify_masked_scaled", "verify_scale"]
