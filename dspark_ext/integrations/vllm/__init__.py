"""vLLM plugin: vLLM's v1 speculative-decoding verification on dspark_ext's ops.

Installed through the ``vllm.general_plugins`` entry point ``dspark_ext``
(``dspark_ext.vllm_plugin:register``), which vLLM calls in every process before it builds a
model runner. ``DSPARK_VLLM_PLUGIN=0`` turns it off.

Modules, one concept each:

* :mod:`.registration` -- the entry point: swaps the rejection sampler class of vLLM's v1
  (GPU and CPU) model runner for :class:`~.sampler.DsparkRejectionSampler`.
* :mod:`.sampler` -- the replacement sampler (``RejectionSampler.forward``).
* :mod:`.fallback` -- which batches go to vLLM's own sampler, and the once-per-reason log.
* :mod:`.layout` -- vLLM's flattened inputs -> the ragged layout of
  ``torch.ops.dspark.rejection_sample_ragged`` / ``verify_greedy_ragged``.
* :mod:`.masking` -- top-k / top-p on the target logits (vLLM's own masking functions).
* :mod:`.seeds` -- per-request Philox keys and offsets from vLLM's generators.

Nothing here imports vLLM at import time, so ``import dspark_ext`` never needs vLLM.
"""
from .registration import ENV_VAR, is_enabled, register

__all__ = ["ENV_VAR", "is_enabled", "register"]
