"""Optional on-disk hidden-state cache (what DeepSpec's ``prepare_target_cache`` writes, and
what the online target makes unnecessary): the target's features and last hidden state of
every training token, bf16, in sharded memory-mapped files.

Use it when the target is much more expensive than the drafter and the data is read for many
epochs, and the disk is there: :func:`build_cache` prints the size it is about to write (and
refuses when the file system has less free space) before writing anything. Training then
reads the cache through :class:`CachedTarget`, a drop-in for
:class:`~dspark_ext.train.online_target.OnlineTarget` (the LM head still runs at the
supervised slots only, from the target's frozen weight).

Layout of the directory: ``index.json`` (sizes, shards, per-example shard / offset / length)
and per shard ``features_<i>.bin`` [T_i, F] and ``hidden_<i>.bin`` [T_i, d], raw bf16 bit
patterns (int16), row-major.
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from .data import Example, collate
from .online_target import OnlineTarget, TargetBatch, cache_bytes, lm_head_at

__all__ = ["build_cache", "HiddenStateCache", "CachedTarget"]

INDEX = "index.json"


def _bits(t: Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.bfloat16).contiguous().view(torch.int16).numpy()


def build_cache(directory: str, target: OnlineTarget, examples: Sequence[Example],
                batch_size: int = 8, shard_tokens: int = 1 << 22, log=sys.stderr) -> int:
    """Run the target over ``examples`` and write the cache; returns the bytes written.
    The size estimate is printed first; too little free disk raises before any write."""
    f_size = len(target.layers) * target.config.hidden_size
    d = target.config.hidden_size
    tokens = sum(len(e.input_ids) for e in examples)
    need = cache_bytes(tokens, len(target.layers), d)
    os.makedirs(directory, exist_ok=True)
    free = shutil.disk_usage(directory).free
    log.write(f"hidden-state cache: {tokens} tokens x ({len(target.layers)} feature layers + "
              f"last) x {d} x bf16 = {need / 1e9:.3f} GB in {directory} "
              f"({free / 1e9:.1f} GB free)\n")
    log.flush()
    if need > free:
        raise OSError(f"the cache needs {need / 1e9:.3f} GB but {directory} has only "
                      f"{free / 1e9:.3f} GB free; train with the online target instead")
    shards: List[dict] = []
    entries: List[list] = []
    maps: list = []   # the open shard's (features, hidden) memmaps
    fill = 0

    def open_shard(size: int) -> None:
        i = len(shards)
        shards.append({"features": f"features_{i}.bin", "hidden": f"hidden_{i}.bin",
                       "tokens": size})
        maps[:] = [np.memmap(os.path.join(directory, shards[-1][kind]), dtype=np.int16,
                             mode="w+", shape=(size, width))
                   for kind, width in (("features", f_size), ("hidden", d))]

    def close_shard() -> None:
        # Trim the shard to the tokens it holds (an example never straddles two shards).
        shards[-1]["tokens"] = fill
        for mm in maps:
            mm.flush()
        maps.clear()  # unmapped before the files shrink
        for kind, width in (("features", f_size), ("hidden", d)):
            os.truncate(os.path.join(directory, shards[-1][kind]), fill * width * 2)

    remaining = tokens
    for start in range(0, len(examples), batch_size):
        part = examples[start:start + batch_size]
        ids, _ = collate(part)
        out = target(ids.to(target.device))
        for row, ex in enumerate(part):
            n = len(ex.input_ids)
            if not maps or fill + n > maps[0].shape[0]:
                if maps:
                    close_shard()
                open_shard(max(n, min(shard_tokens, remaining)))
                fill = 0
            maps[0][fill:fill + n] = _bits(out.features[row, :n])
            maps[1][fill:fill + n] = _bits(out.last_hidden[row, :n])
            entries.append([len(shards) - 1, fill, n])
            fill += n
            remaining -= n
    if maps:
        close_shard()
    index = {"num_examples": len(examples), "tokens": tokens, "feature_size": f_size,
             "hidden_size": d, "layers": list(target.layers), "dtype": "bfloat16",
             "shards": shards, "examples": entries}
    with open(os.path.join(directory, INDEX + ".tmp"), "w") as f:
        json.dump(index, f)
    os.replace(os.path.join(directory, INDEX + ".tmp"), os.path.join(directory, INDEX))
    return need


class HiddenStateCache:
    """Read side: ``cache[i]`` -> (features bf16 [L, F], last_hidden bf16 [L, d])."""

    def __init__(self, directory: str):
        with open(os.path.join(directory, INDEX)) as f:
            self.index = json.load(f)
        self.directory = directory
        self._maps: dict = {}

    @staticmethod
    def exists(directory: str) -> bool:
        return os.path.isfile(os.path.join(directory, INDEX))

    def __len__(self) -> int:
        return self.index["num_examples"]

    def check(self, examples: Sequence[Example]) -> None:
        """Raise unless the cache was built from ``examples`` (same count and lengths)."""
        lengths = [n for _, _, n in self.index["examples"]]
        if lengths != [len(e.input_ids) for e in examples]:
            raise ValueError(f"{self.directory} was not built from these training examples "
                             f"({len(lengths)} cached, {len(examples)} given); delete it or "
                             "pass another --cache directory")

    def _map(self, shard: int, kind: str, width: int) -> np.memmap:
        key = (shard, kind)
        if key not in self._maps:
            s = self.index["shards"][shard]
            self._maps[key] = np.memmap(os.path.join(self.directory, s[kind]), dtype=np.int16,
                                        mode="r", shape=(s["tokens"], width))
        return self._maps[key]

    def __getitem__(self, i: int):
        shard, off, n = self.index["examples"][i]
        f = self._map(shard, "features", self.index["feature_size"])[off:off + n]
        h = self._map(shard, "hidden", self.index["hidden_size"])[off:off + n]
        return (torch.from_numpy(np.array(f)).view(torch.bfloat16),
                torch.from_numpy(np.array(h)).view(torch.bfloat16))


class CachedTarget:
    """The trainer's target, read from a :class:`HiddenStateCache` (``indices`` name the
    examples of the batch); the LM head is the target's, frozen."""

    def __init__(self, cache: HiddenStateCache, lm_head: torch.nn.Module, config,
                 softcap: Optional[float] = None, device=None):
        self.cache, self.lm_head, self.config, self.softcap = cache, lm_head, config, softcap
        self.layers = list(cache.index["layers"])
        self._device = torch.device(device) if device is not None else lm_head.weight.device

    @classmethod
    def from_online(cls, cache: HiddenStateCache, target: OnlineTarget) -> "CachedTarget":
        if list(cache.index["layers"]) != list(target.layers):
            raise ValueError(f"the cache holds target layers {cache.index['layers']}, the "
                             f"drafter reads {target.layers}")
        return cls(cache, target.lm_head, target.config, target.softcap, target.device)

    @property
    def device(self) -> torch.device:
        return self._device

    def __call__(self, input_ids: Tensor, indices: Optional[Sequence[int]] = None) -> TargetBatch:
        if indices is None or len(indices) != input_ids.shape[0]:
            raise ValueError("CachedTarget needs the batch's example indices")
        b, s = input_ids.shape
        feats = torch.zeros(b, s, self.cache.index["feature_size"], dtype=torch.bfloat16)
        hidden = torch.zeros(b, s, self.cache.index["hidden_size"], dtype=torch.bfloat16)
        for row, i in enumerate(indices):
            f, h = self.cache[int(i)]
            feats[row, :f.shape[0]], hidden[row, :h.shape[0]] = f, h
        dtype = self.lm_head.weight.dtype
        return TargetBatch(feats.to(self._device), hidden.to(self._device, dtype))

    def logits_at(self, last_hidden: Tensor, positions: Tensor) -> Tensor:
        return lm_head_at(self.lm_head, last_hidden, positions, self.softcap)
