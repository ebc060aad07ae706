"""Pure-PyTorch Philox4x32-10 and the library's stream layout (design §2): for the same
``(seed, offset, position, purpose, lane)`` these functions draw the same uniforms as the
kernels (``csrc/core/philox.h``), bit for bit: a uniform is ``(2m + 1) * 2**-24`` with 23
random bits ``m``, which float32 and float64 both represent exactly."""
from __future__ import annotations

from typing import Sequence, Tuple, Union

import torch
from torch import Tensor

__all__ = ["PURPOSE_DRAFT", "PURPOSE_ACCEPT", "PURPOSE_RESIDUAL", "philox4x32_10", "rng_words",
           "uniforms", "uniform_from_words"]

# ----------------------------------------------------------------------------------------
# Philox4x32-10 (Salmon et al., SC'11; Random123 constants), on int64 tensors holding uint32
# ----------------------------------------------------------------------------------------

_MASK16 = 0xFFFF
_MASK32 = 0xFFFFFFFF
_PHILOX_M0 = 0xD2511F53
_PHILOX_M1 = 0xCD9E8D57
_PHILOX_W0 = 0x9E3779B9
_PHILOX_W1 = 0xBB67AE85

# Purposes (csrc/core/philox.h RngPurpose): disjoint counter ranges of one (seed, offset).
PURPOSE_DRAFT = 1  # drafting (Gumbel over the vocabulary)
PURPOSE_ACCEPT = 2  # acceptance uniforms: token-wise u_k, block-verification eta_i
PURPOSE_RESIDUAL = 3  # correction / bonus / fallback sampling


def _mulhilo(m: int, c: Tensor) -> Tuple[Tensor, Tensor]:
    """(hi, lo) 32-bit words of the 64-bit product m * c, for uint32 m and uint32 values c.

    c is split into 16-bit halves so that no intermediate exceeds 2**49 (no int64 overflow):
    m*c = a + b*2**16 with a = m*c_lo, b = m*c_hi.
    """
    a = m * (c & _MASK16)  # < 2**48
    b = m * (c >> 16)  # < 2**48
    low_part = a + ((b & _MASK16) << 16)  # < 2**49: bits 0..48 of the product
    lo = low_part & _MASK32
    hi = ((low_part >> 32) + (b >> 16)) & _MASK32
    return hi, lo


def philox4x32_10(counter: Tensor, key: Tensor) -> Tensor:
    """Philox4x32-10 of ``counter`` (int64 ``[..., 4]``) under ``key`` (int64 ``[..., 2]``).

    Both hold uint32 values (0 .. 2**32-1) and broadcast against each other over the leading
    dimensions. Returns int64 ``[..., 4]`` holding the four uint32 output words.
    """
    counter = torch.as_tensor(counter, dtype=torch.int64)
    key = torch.as_tensor(key, dtype=torch.int64)
    if counter.shape[-1:] != (4,) or key.shape[-1:] != (2,):
        raise ValueError(
            f"philox4x32_10: counter must be [..., 4] and key [..., 2], got "
            f"{tuple(counter.shape)} and {tuple(key.shape)}"
        )
    lead = torch.broadcast_shapes(counter.shape[:-1], key.shape[:-1])
    c0, c1, c2, c3 = counter.expand(*lead, 4).unbind(-1)
    k0, k1 = key.expand(*lead, 2).unbind(-1)
    for _ in range(10):
        hi0, lo0 = _mulhilo(_PHILOX_M0, c0)
        hi1, lo1 = _mulhilo(_PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0 = (k0 + _PHILOX_W0) & _MASK32
        k1 = (k1 + _PHILOX_W1) & _MASK32
    return torch.stack([c0, c1, c2, c3], dim=-1)


# ----------------------------------------------------------------------------------------
# Stream layout (csrc/core/philox.h RngStream)
# ----------------------------------------------------------------------------------------


def _int64_tensor(x: Union[int, Sequence[int], Tensor]) -> Tensor:
    return torch.as_tensor(x, dtype=torch.int64).reshape(-1).cpu()


def rng_words(
    seed: Union[int, Tensor],
    offset: Union[int, Tensor],
    position: Union[int, Tensor],
    purpose: int,
    lanes: int,
) -> Tensor:
    """Philox words of vocabulary lanes ``0 .. lanes-1`` of one stream per row.

    ``seed`` / ``offset`` are int64 ``[B]`` (any int64, read as uint64, so negative seeds and
    offsets >= 2**32 are fine), ``position`` an int or int64 ``[B]``. Layout of
    ``RngStream``: key = (seed low word, seed high word); counter = (lane // 4, offset low
    word, offset high word, purpose << 24 | (position & 0xFFFFFF)); lane ``v`` is output word
    ``v % 4``. Returns int64 ``[B, lanes]`` holding uint32 values.
    """
    seed, offset, position = torch.broadcast_tensors(
        _int64_tensor(seed), _int64_tensor(offset), _int64_tensor(position)
    )
    if not 0 <= purpose <= 255:
        raise ValueError(f"rng_words: purpose must fit in 8 bits, got {purpose}")
    if lanes < 0:
        raise ValueError(f"rng_words: lanes must be >= 0, got {lanes}")
    groups = (lanes + 3) // 4
    rows = seed.shape[0]
    key = torch.stack([seed & _MASK32, (seed >> 32) & _MASK32], dim=-1)  # [B, 2]
    tag = (purpose << 24) | (position & 0xFFFFFF)
    per_row = torch.stack([offset & _MASK32, (offset >> 32) & _MASK32, tag], dim=-1)  # [B, 3]
    group = torch.arange(groups, dtype=torch.int64)
    counter = torch.cat(
        [group.view(1, groups, 1).expand(rows, groups, 1),
         per_row.view(rows, 1, 3).expand(rows, groups, 3)],
        dim=-1,
    )  # [B, G, 4]
    words = philox4x32_10(counter, key.view(rows, 1, 2))  # [B, G, 4]
    return words.reshape(rows, 4 * groups)[:, :lanes]


def uniform_from_words(words: Tensor) -> Tensor:
    """The kernels' uniform of a 32-bit word: ``((w >> 9) * 2 + 1) * 2**-24`` as float64.

    Exactly the float32 value of ``uniform_from_word`` (strictly inside (0, 1)).
    """
    odd = ((words >> 9) << 1) | 1
    return odd.to(torch.float64) * 2.0**-24


def uniforms(
    seed: Union[int, Tensor],
    offset: Union[int, Tensor],
    position: Union[int, Tensor],
    purpose: int,
    lanes: int,
) -> Tensor:
    """float64 ``[B, lanes]`` uniforms of :func:`rng_words`. A scalar draw is lane 0."""
    return uniform_from_words(rng_words(seed, offset, position, purpose, lanes))


