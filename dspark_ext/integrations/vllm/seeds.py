"""Per-request Philox keys and offsets from vLLM's random-number generators.

dspark's ops draw every random number from a counter-based Philox stream keyed per request
by ``(seed[r], offset[r])``: the same key gives the same tokens, whatever the batch around it.
vLLM gives seeded requests their own ``torch.Generator`` (``SamplingMetadata.generators``,
batch index -> generator, created from ``SamplingParams.seed``) and samples unseeded ones from
the device's default generator. Each verification step:

* a seeded request's key is a fresh int64 drawn from *its* generator, and its offset is 0.
  The generator advances with every draw (and with every other use vLLM makes of it, such as
  the first token's sampling), so the key changes every step, deterministically: the same
  seed and prompt give the same tokens in any batch, on any run;
* an unseeded request's key is drawn from the default generator, and its offset is the
  sampler's step counter, which advances every call, so no ``(key, offset)`` pair repeats
  within a process even if the default generator were reseeded.

No host synchronisation: the draws are made on the logits' device.
"""
from __future__ import annotations

from typing import Dict, Tuple

import torch

_INT64_MIN = -(2 ** 63)
_INT64_MAX = 2 ** 63 - 1  # randint's upper bound is exclusive: 2**63 - 1 itself is never drawn


def _draw(count: int, device: torch.device, generator=None) -> torch.Tensor:
    return torch.randint(_INT64_MIN, _INT64_MAX, (count,), dtype=torch.int64, device=device,
                         generator=generator)


def philox_keys(generators: Dict[int, torch.Generator], batch: int, step: int,
                device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """``(seed int64 [B], offset int64 [B])`` for one verification step."""
    seed = _draw(batch, device)
    offset = torch.full((batch,), step, dtype=torch.int64, device=device)
    for index, generator in generators.items():
        if index < batch:
            seed[index] = _draw(1, generator.device, generator).to(device)[0]
            offset[index] = 0
    return seed, offset
