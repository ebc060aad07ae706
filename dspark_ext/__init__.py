"""dspark_ext: fast, lossless speculative-decoding kernels (DSpark) for any torch model.

Ops (CPU and CUDA, registered as torch.ops.dspark.*; wrappers in :mod:`dspark_ext.ops`):
:func:`verify_greedy`, :func:`rejection_sample` (token-wise and block verification),
:func:`markov_sample` (Markov-head drafting), :func:`schedule_prefix` (the prefix scheduler,
:mod:`dspark_ext.scheduler`); confidence calibration in :mod:`dspark_ext.calibration`. The
pure-PyTorch ground truth of every op is in :mod:`dspark_ext.reference`. Above the ops: the
targets and drafters behind their protocols, the decoding loop, training, evaluation, the
bundled default and the HF / vLLM integrations. ``docs/design.md`` is the design document
the code cites as "design §N".
"""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # registers the ops  # noqa: E402


def _check_cpu_features() -> None:
    """Fail with a clear message, not SIGILL, when this build's CPU kernels use instructions
    the running CPU lacks (a wheel built with -mavx512f copied to an older machine)."""
    wanted = [f[2:].replace("-", "_") for f in _C.cpu_flags().split()
              if f.startswith("-m") and not f.startswith("-mprefer")]
    try:
        with open("/proc/cpuinfo") as f:
            have = set(f.read().split())
    except OSError:
        return
    missing = [f for f in wanted if f not in have]
    if missing:
        raise ImportError(
            f"dspark_ext was built with {_C.cpu_flags()!r} but this CPU lacks {missing}; "
            "rebuild it here (pip install --no-build-isolation .) or set "
            "DSPARK_CPU_ARCH_FLAGS when building")


_check_cpu_features()
from . import _compat  # noqa: E402
_compat.install()  # old module paths (dspark_ext.reference_markov, ...) stay importable
from . import ops  # noqa: F401, E402  (op wrappers and fake kernels for torch.compile)
from . import calibration, scheduler  # noqa: F401, E402
from .calibration import apply_sts, fit_sts  # noqa: E402
from .ops import (MarkovResult, MarkovTopkResult, VerifyResult, check_cuda_inputs,  # noqa: E402
                  markov_sample, rejection_sample, verify_greedy)
from .scheduler import (AsyncScheduler, ScheduleResult, SPSProfile, schedule_capacity,
                        schedule_causal, schedule_global, schedule_prefix)
from .decoding import (FixedLength, GenerationOutput, Scheduled, SpeculativeDecoder,
                       StaticThreshold)
from .drafters import ContextUpdate, DraftBlock, Drafter, ModelDrafter, NgramDrafter
from .targets import KVCache, Target, TorchTarget
from .bundled import default_pair

__version__ = _C.version()


def build_info() -> dict:
    """How this copy was built: version, CUDA kernels compiled in, CUDA arch list, CPU flags."""
    return {
        "version": _C.version(),
        "cuda_enabled": _C.cuda_enabled(),
        "cuda_arch_list": _C.cuda_arch_list(),
        "cpu_flags": _C.cpu_flags(),
        "torch": torch.__version__,
    }


def __getattr__(name):
    # Lazy: DSparkDrafter (its checkpoints need safetensors), HFTarget and the HF hook
    # (transformers) live behind optional extras.
    import importlib
    if name in ("DSparkDrafter", "DSparkConfig"):
        return getattr(importlib.import_module(".drafters.dspark", __name__), name)
    if name == "HFTarget":
        return importlib.import_module(".targets.hf_target", __name__).HFTarget
    if name == "hf":
        return importlib.import_module(".hf", __name__)
    raise AttributeError(f"module 'dspark_ext' has no attribute {name!r}")


__all__ = ["ContextUpdate", "DraftBlock", "Drafter", "DSparkConfig", "DSparkDrafter",
           "FixedLength", "GenerationOutput", "HFTarget", "KVCache", "ModelDrafter",
           "NgramDrafter", "Scheduled", "SpeculativeDecoder", "StaticThreshold", "Target",
           "TorchTarget", "MarkovResult", "MarkovTopkResult", "VerifyResult", "build_info",
           "markov_sample", "rejection_sample", "check_cuda_inputs",
           "verify_greedy", "AsyncScheduler", "ScheduleResult", "SPSProfile", "apply_sts",
           "fit_sts", "schedule_capacity", "schedule_causal", "schedule_global",
           "schedule_prefix"]
