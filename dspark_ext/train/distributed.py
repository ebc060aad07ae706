"""Data-parallel training on an existing engine: the same entry point runs alone or under
``torchrun`` (which sets RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT).

* backend: NCCL when the training device is CUDA, gloo on CPU;
* strategy "ddp": :class:`torch.nn.parallel.DistributedDataParallel` around :class:`DraftStep`
  (DDP hooks the module's ``forward``; the drafter's training forward is its
  ``teacher_forced`` method, so this thin module makes it DDP's forward);
* strategy "fsdp": FSDP2 ``fully_shard`` on :class:`DraftStep` as one unit (NCCL or gloo):
  parameters, gradients and optimizer state are sharded across ranks and gathered for the
  step. Per-layer units do not work here: the training forward calls each draft layer's
  ``context_key_values`` method besides its ``forward``, and FSDP only gathers a unit's
  weights in its forward hook. Checkpoints gather the full weights (:func:`full_state_dict`).

Every rank reads its own slice of the global batch; losses are normalised by the all-reduced
weight sum and multiplied by the world size (DDP averages gradients), so N processes compute
the gradient of the same objective as one process over the whole global batch.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, Optional

import torch
import torch.distributed as dist
from torch import Tensor, nn

__all__ = ["DistInfo", "DraftStep", "init_distributed", "wrap_model", "all_reduce_sum",
           "full_state_dict", "shutdown"]


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    backend: Optional[str] = None
    owns_group: bool = False   # this call started the process group (and ends it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_distributed(device: Optional[str] = None) -> DistInfo:
    """Read torchrun's environment; start the process group when WORLD_SIZE > 1. ``device``:
    "cpu", "cuda" or None (CUDA when available); under torchrun each rank takes
    cuda:LOCAL_RANK."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    kind = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(kind)
    if dev.type == "cuda":
        dev = torch.device("cuda", local if dev.index is None else dev.index)
        torch.cuda.set_device(dev)
    info = DistInfo(rank, world, local, dev)
    if world > 1 and not dist.is_initialized():
        info.backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(info.backend, rank=rank, world_size=world)
        info.owns_group = True
    elif dist.is_initialized():
        info.backend = dist.get_backend()
    return info


def shutdown(info: Optional[DistInfo] = None) -> None:
    """End the process group if ``info`` started it (a caller that started its own, e.g. to
    run several trainings in one launch, keeps it)."""
    if dist.is_initialized() and (info is None or info.owns_group):
        dist.destroy_process_group()


class DraftStep(nn.Module):
    """``forward`` = the drafter's teacher-forced training step (what DDP / FSDP wrap)."""

    def __init__(self, drafter: nn.Module):
        super().__init__()
        self.drafter = drafter

    def forward(self, features, input_ids, anchors, block_keep, loss_mask):
        return self.drafter.teacher_forced(features, input_ids, anchors, block_keep, loss_mask)


def wrap_model(drafter: nn.Module, info: DistInfo, strategy: str = "ddp",
               find_unused_parameters: bool = False) -> nn.Module:
    """The module the training loop calls: DraftStep, wrapped for ``strategy`` when the run
    is distributed ("ddp" or "fsdp"; "none" never wraps)."""
    step = DraftStep(drafter)
    if strategy not in ("ddp", "fsdp", "none"):
        raise ValueError(f"strategy must be ddp, fsdp or none, got {strategy!r}")
    if not info.distributed or strategy == "none":
        return step
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard
        fully_shard(step)  # one unit: see the module docstring
        return step
    ids = [info.device.index] if info.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(step, device_ids=ids,
                                               find_unused_parameters=find_unused_parameters)


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum over ranks (a copy; the input unchanged); identity when not distributed."""
    out = t.detach().clone()
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def full_state_dict(drafter: nn.Module) -> Dict[str, Tensor]:
    """The drafter's full (unsharded) weights on the CPU (gathers FSDP2 DTensors)."""
    out = {}
    for name, t in drafter.state_dict().items():
        if hasattr(t, "full_tensor"):
            t = t.full_tensor()
        out[name] = t.detach().cpu()
    return out
