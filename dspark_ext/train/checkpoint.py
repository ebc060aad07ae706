"""Training checkpoints: the drafter in DeepSpec's format plus everything exact resume needs.

Layout of ``<out>/step_<N>/``:

* ``config.json`` + ``model.safetensors``: the drafter (``DSparkDrafter.save_pretrained``;
  loads in DeepSpec, in ``DSparkDrafter.from_pretrained`` and in ``python -m dspark_ext.eval``),
  written by rank 0 in the training dtype (float32 master weights);
* ``training_state_rank<r>.pt``: that rank's optimizer and scheduler state, the torch / CUDA /
  numpy / Python RNG states, the next global step (the data position: the data order is a
  pure function of the step, :class:`~dspark_ext.train.data.DataOrder`) and the world size;
* ``trainer.json``: the training configuration, for reference.

``<out>/latest`` names the newest complete checkpoint (written last, after every rank has
finished, so an interrupted save is never resumed from).
"""
from __future__ import annotations

import json
import os
import random
from typing import Optional

import numpy as np
import torch
import torch.distributed as dist

from ..drafters.dspark.checkpoint import read_safetensors, save_pretrained
from .distributed import DistInfo, full_state_dict

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "rng_state",
           "set_rng_state"]

LATEST = "latest"


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


class _Weights(torch.nn.Module):
    """A stand-in with the drafter's config/dtype and gathered weights, for save_pretrained
    (used when the live drafter's weights are FSDP shards)."""

    def __init__(self, drafter, state):
        super().__init__()
        self.config, self._state = drafter.config, state
        self.dtype = next(iter(state.values())).dtype

    def state_dict(self, *args, **kwargs):
        return self._state


def save_checkpoint(out_dir: str, step: int, drafter, optimizer, scheduler, info: DistInfo,
                    config: Optional[dict] = None) -> str:
    """Write ``<out_dir>/step_<step>`` (``step`` = global steps done); returns its path."""
    path = os.path.join(out_dir, f"step_{step:07d}")
    os.makedirs(path, exist_ok=True)
    sharded = any(hasattr(t, "full_tensor") for t in drafter.state_dict().values())
    if sharded:
        state = full_state_dict(drafter)  # collective: every rank takes part
        if info.is_main:
            save_pretrained(_Weights(drafter, state), path)
    elif info.is_main:
        drafter.save_pretrained(path)
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "rng": rng_state(), "next_step": int(step), "world_size": info.world_size,
                "rank": info.rank},
               os.path.join(path, f"training_state_rank{info.rank}.pt"))
    if info.is_main and config is not None:
        with open(os.path.join(path, "trainer.json"), "w") as f:
            json.dump(config, f, indent=1, default=str)
    _barrier()
    if info.is_main:
        tmp = os.path.join(out_dir, LATEST + ".tmp")
        with open(tmp, "w") as f:
            f.write(os.path.basename(path) + "\n")
        os.replace(tmp, os.path.join(out_dir, LATEST))
    _barrier()
    return path


def latest_checkpoint(path: str) -> Optional[str]:
    """A checkpoint directory as is; for a training output directory, the one ``latest``
    names (None when there is none)."""
    if os.path.isfile(os.path.join(path, "config.json")):
        return path
    marker = os.path.join(path, LATEST)
    if not os.path.isfile(marker):
        return None
    with open(marker) as f:
        return os.path.join(path, f.read().strip())


def load_checkpoint(path: str, drafter, optimizer, scheduler, info: DistInfo) -> int:
    """Restore weights (in place: the optimizer keeps its parameters), optimizer, scheduler
    and RNG state from ``path`` (a checkpoint or an output directory); returns the next
    global step."""
    ckpt = latest_checkpoint(path)
    if ckpt is None:
        raise FileNotFoundError(f"{path}: no checkpoint (no config.json and no '{LATEST}')")
    weights = read_safetensors(ckpt)
    with torch.no_grad():
        own = drafter.state_dict()
        missing = sorted(set(own) - set(weights))
        if missing:
            raise ValueError(f"{ckpt}: checkpoint lacks {missing}")
        for name, t in own.items():
            src = weights[name].to(t.dtype)
            if hasattr(t, "full_tensor"):  # FSDP shard: copy this rank's piece
                from torch.distributed.tensor import distribute_tensor
                src = distribute_tensor(src.to(t.device), t.device_mesh, t.placements)
                t.copy_(src)
            else:
                t.copy_(src.to(t.device))
    state_file = os.path.join(ckpt, f"training_state_rank{info.rank}.pt")
    if not os.path.isfile(state_file):
        raise FileNotFoundError(f"{state_file} is missing: resume with the world size the "
                                "checkpoint was written with")
    state = torch.load(state_file, map_location="cpu", weights_only=False)
    if int(state["world_size"]) != info.world_size:
        raise ValueError(f"{ckpt} was written by {state['world_size']} processes, this run has "
                         f"{info.world_size}")
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    return int(state["next_step"])
