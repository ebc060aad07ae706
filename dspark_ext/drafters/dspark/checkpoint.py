"""Checkpoints in DeepSpec's / Hugging Face's ``save_pretrained`` layout (design §7): a directory
with ``config.json`` and ``model.safetensors`` (or HF's sharded ``model.safetensors.index.json``
+ shards), weight names exactly as DeepSpec's ``Qwen3DSparkModel`` state dict (no "model."
prefix). Released deepseek-ai/dspark_* and dflash_* checkpoints load unchanged.

``safetensors`` is an optional dependency, imported only here, when a checkpoint is read or
written.
"""
from __future__ import annotations

import json
import logging
import os
from collections import Counter
from typing import Dict, Optional

import torch
from torch import Tensor

from .config import DSparkConfig
from .errors import CheckpointError, ConfigError

__all__ = ["CheckpointError", "load_pretrained", "save_pretrained", "check_state_dict",
           "read_safetensors"]

log = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
INDEX_NAME = "model.safetensors.index.json"
# Buffers some writers include although they are derived from the config: ignored on load.
_IGNORED = ("rotary_emb.inv_freq",)
_DTYPE_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def _safetensors():
    try:
        import safetensors.torch as st
    except ImportError:
        raise ImportError("reading or writing DSpark checkpoints needs the 'safetensors' package "
                          "(pip install safetensors)") from None
    return st


def read_safetensors(path) -> Dict[str, Tensor]:
    """Every tensor of a checkpoint directory (single file or HF-sharded), on the CPU."""
    st = _safetensors()
    single, index = os.path.join(path, WEIGHTS_NAME), os.path.join(path, INDEX_NAME)
    if os.path.isfile(single):
        return st.load_file(single, device="cpu")
    if os.path.isfile(index):
        with open(index, "r", encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map", {})
        tensors: Dict[str, Tensor] = {}
        for shard in sorted(set(weight_map.values())):
            tensors.update(st.load_file(os.path.join(path, shard), device="cpu"))
        return tensors
    raise FileNotFoundError(f"{path}: no {WEIGHTS_NAME} or {INDEX_NAME} (DSpark checkpoints are "
                            "safetensors files written by save_pretrained)")


def check_state_dict(expected: Dict[str, torch.Size], tensors: Dict[str, Tensor],
                     source: str) -> None:
    """Raise :class:`CheckpointError` listing missing / unexpected / wrong-shape tensors."""
    problems = []
    missing = [n for n in expected if n not in tensors]
    unexpected = [n for n in tensors if n not in expected]
    if missing:
        problems.append("missing tensors: " + ", ".join(
            f"{n} (expected shape {list(expected[n])})" for n in missing))
    if unexpected:
        problems.append("unexpected tensors (not in a drafter with this config): " + ", ".join(
            f"{n} {list(tensors[n].shape)}" for n in unexpected))
    for name, shape in expected.items():
        if name in tensors and tuple(tensors[name].shape) != tuple(shape):
            problems.append(f"{name}: expected shape {list(shape)}, got "
                            f"{list(tensors[name].shape)}")
    for name, t in tensors.items():
        if name in expected and not t.is_floating_point():
            problems.append(f"{name}: expected a floating-point tensor, got {t.dtype}")
    if problems:
        raise CheckpointError(f"{source}: checkpoint does not match its config:\n  "
                              + "\n  ".join(problems))


def _checkpoint_dtype(tensors: Dict[str, Tensor]) -> torch.dtype:
    """The dtype most of the checkpoint's elements are stored in."""
    count: Counter = Counter()
    for t in tensors.values():
        if t.is_floating_point():
            count[t.dtype] += t.numel()
    return count.most_common(1)[0][0] if count else torch.float32


def load_pretrained(cls, path, dtype: Optional[torch.dtype] = None, device=None):
    """Build ``cls`` (DSparkDrafter) from a checkpoint directory. ``dtype``: cast every weight
    (default: keep the checkpoint's dtype); ``device``: where the weights go (default CPU)."""
    path = os.fspath(path)
    config_path = os.path.join(path, CONFIG_NAME)
    if not os.path.isfile(config_path):
        raise FileNotFoundError(f"{path}: no {CONFIG_NAME} (not a checkpoint directory)")
    try:
        config = DSparkConfig.from_json_file(config_path)
    except ConfigError as exc:
        raise ConfigError(f"{config_path}: {exc}") from None
    tensors = read_safetensors(path)
    for name in _IGNORED:
        if tensors.pop(name, None) is not None:
            log.info("%s: ignoring %s (recomputed from the config)", path, name)
    model = cls(config, device="meta")
    expected = {n: p.shape for n, p in model.state_dict().items()}
    if config.tie_word_embeddings and "lm_head.weight" not in tensors \
            and "embed_tokens.weight" in tensors:
        tensors["lm_head.weight"] = tensors["embed_tokens.weight"]
    check_state_dict(expected, tensors, path)
    dtype = dtype or _checkpoint_dtype(tensors)
    device = torch.device(device or "cpu")
    state = {n: t.to(device=device, dtype=dtype) for n, t in tensors.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.embed_tokens.requires_grad_(False)  # the target's, frozen (design §7)
    model.lm_head.requires_grad_(False)
    return model


def save_pretrained(model, path) -> None:
    """Write ``config.json`` and ``model.safetensors`` (DeepSpec / HF layout)."""
    st = _safetensors()
    os.makedirs(path, exist_ok=True)
    config = model.config.to_dict()
    config["dtype"] = _DTYPE_NAMES.get(model.dtype, str(model.dtype).replace("torch.", ""))
    if "torch_dtype" in config:  # transformers-4 spelling, kept in step
        config["torch_dtype"] = config["dtype"]
    with open(os.path.join(path, CONFIG_NAME), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    state = {n: t.detach().contiguous().cpu() for n, t in model.state_dict().items()}
    st.save_file(state, os.path.join(path, WEIGHTS_NAME), metadata={"format": "pt"})
