"""The ``vllm.general_plugins`` entry point: install the dspark rejection sampler.

vLLM's v1 model runner (``vllm/v1/worker/gpu_model_runner.py``; the CPU and XPU runners
subclass it) builds ``RejectionSampler(self.sampler, spec_config, device)`` by the name it
imported from ``vllm.v1.sample.rejection_sampler``. vLLM has no setting that selects the
sampler class, so :func:`register` rebinds that name, in the defining module (for runners
imported later) and in the runner module when it is already imported, to
:class:`~dspark_ext.vllm_plugin.sampler.DsparkRejectionSampler`, a subclass.

vLLM's model runner V2 (``vllm/v1/worker/gpu/``, the default on GPUs with Triton) has its own
rejection sampler (``vllm/v1/worker/gpu/spec_decode/rejection_sampler.py``) with a different
interface; the plugin leaves it alone (see the README, "Using dspark_ext inside vLLM").
"""
from __future__ import annotations

import logging
import os
import sys

ENV_VAR = "DSPARK_VLLM_PLUGIN"
_RUNNER_MODULE = "vllm.v1.worker.gpu_model_runner"
_SAMPLER_MODULE = "vllm.v1.sample.rejection_sampler"

# A child of the "vllm" logger, so vLLM's logging set-up (handlers, VLLM_LOGGING_LEVEL) applies.
logger = logging.getLogger("vllm.dspark_ext")


def is_enabled() -> bool:
    """False when ``DSPARK_VLLM_PLUGIN`` is ``0``, ``false``, ``no`` or ``off``."""
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def register() -> None:
    """Entry point of the ``vllm.general_plugins`` group. Idempotent (vLLM may call it
    several times, in several processes)."""
    if not is_enabled():
        logger.info("dspark_ext vLLM plugin disabled by %s=%s", ENV_VAR, os.environ[ENV_VAR])
        return
    import importlib

    from .sampler import DsparkRejectionSampler

    targets = [importlib.import_module(_SAMPLER_MODULE)]
    if _RUNNER_MODULE in sys.modules:
        targets.append(sys.modules[_RUNNER_MODULE])
    for module in targets:
        if getattr(module, "RejectionSampler", None) is not DsparkRejectionSampler:
            module.RejectionSampler = DsparkRejectionSampler
    logger.info("dspark_ext vLLM plugin: v1 RejectionSampler -> DsparkRejectionSampler")
