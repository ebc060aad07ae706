"""dspark_ext: fast, lossless speculative-decoding kernels (DSpark) for any torch model.

Ops (CPU and CUDA, registered as torch.ops.dspark.*): :func:`verify_greedy`,
:func:`rejection_sample` (token-wise and block verification). The pure-PyTorch ground truth
of every op is in :mod:`dspark_ext.reference`.
"""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # registers the ops
from . import _fake  # noqa: F401  (fake kernels for torch.compile)
from .ops import VerifyResult, rejection_sample, verify_greedy

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


__all__ = ["VerifyResult", "build_info", "rejection_sample", "verify_greedy"]
