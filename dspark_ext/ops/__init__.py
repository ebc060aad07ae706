"""The op layer: thin Python wrappers over the registered ``torch.ops.dspark`` ops (CPU and
CUDA kernels in ``csrc/``, one per-row algorithm in ``csrc/core``), each beside its fake
(meta) kernel for ``torch.compile`` and export.

* :mod:`.verify` -- ``verify_greedy``, ``rejection_sample`` (token-wise and block
  verification; padded and ragged layouts), design §3;
* :mod:`.markov` -- ``markov_sample``, the fused Markov-head drafting step, design §4;
* :mod:`.schedule` -- the prefix scheduler op and its three calls, design §6;
* :mod:`.sampling` -- one token per row on the library's Philox streams, design §2;
* :mod:`.linear` -- ``small_linear``, F.linear for the drafter's few-row decode GEMMs.

Importing this package registers the fake kernels (the C++ extension registers the ops).
"""
from .. import _C  # noqa: F401  (the ops must exist before their fake kernels register)
from . import markov_fake, schedule_fake, verify_fake  # noqa: F401
from .input_errors import check_cuda_inputs, cuda_input_errors
from .linear import small_linear
from .markov import MarkovResult, MarkovTopkResult, markov_sample
from .sampling import DRAFT_OFFSET_SHIFT, MAX_OFFSET, draft_offset, sample_draft, sample_target
from .schedule import (ScheduleResult, schedule_capacity, schedule_causal, schedule_global,
                       schedule_prefix)
from .verify import VerifyResult, rejection_sample, verify_greedy

__all__ = ["DRAFT_OFFSET_SHIFT", "MAX_OFFSET", "MarkovResult", "MarkovTopkResult",
           "ScheduleResult", "VerifyResult", "check_cuda_inputs", "cuda_input_errors",
           "draft_offset", "markov_sample", "rejection_sample", "sample_draft", "sample_target",
           "schedule_capacity", "schedule_causal", "schedule_global", "schedule_prefix",
           "small_linear", "verify_greedy"]
