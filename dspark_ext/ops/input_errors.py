"""Value errors the CUDA verification kernels found (issue 20): the CPU ops raise for a bad
value (a ragged offset, a draft count, a draft id, a temperature); the CUDA ops cannot without
a host synchronisation, so they leave that request's row empty (``num_emitted = 0``) and set
a bit in a per-device error word, as PyTorch's device-side asserts report later. Read it
when it is convenient (it synchronises the device):

    >>> res = dspark_ext.rejection_sample(...)      # CUDA tensors
    >>> dspark_ext.check_cuda_inputs()              # raises if a row was left empty for that
"""
from __future__ import annotations

from typing import List, Optional, Union

import torch

from .. import _C

# Bit -> what the CPU op would have raised for (csrc/core/verify_problem.h kInputError*).
INPUT_ERRORS = {
    1: "cu_num_draft does not start at 0 or does not end at the number of draft tokens T",
    2: "a request's num_draft or ragged draft count lies outside [0, K]",
    4: "a verified draft token id lies outside [0, V)",
    8: "a temperature is negative or not finite",
}


def _index(device: Optional[Union[torch.device, str, int]]) -> int:
    if device is None:
        return torch.cuda.current_device()
    if isinstance(device, int):
        return device
    device = torch.device(device)
    if device.type != "cuda":
        raise ValueError(f"device must be a CUDA device, got {device}")
    return torch.cuda.current_device() if device.index is None else device.index


def cuda_input_errors(device: Optional[Union[torch.device, str, int]] = None,
                      reset: bool = True) -> List[str]:
    """The value errors the CUDA verification kernels met on ``device`` since the last read
    (``reset`` clears them); [] without CUDA kernels. Synchronises the device."""
    if not _C.cuda_enabled() or not torch.cuda.is_available():
        return []
    bits = _C.cuda_input_errors(_index(device), reset)
    return [msg for bit, msg in INPUT_ERRORS.items() if bits & bit]


def check_cuda_inputs(device: Optional[Union[torch.device, str, int]] = None) -> None:
    """Raise RuntimeError if a CUDA verification call since the last check left a row empty
    because of an invalid input value (and clear the record)."""
    errors = cuda_input_errors(device, reset=True)
    if errors:
        raise RuntimeError("dspark CUDA verification left rows empty (num_emitted = 0) for "
                           "invalid inputs: " + "; ".join(errors))
