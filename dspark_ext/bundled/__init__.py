"""The bundled default: a small Qwen3 code model trained on the Python standard library, its
BPE tokenizer, and its drafters (DSpark, DFlash, a small autoregressive draft model), all
installed with the package.

    >>> pair = dspark_ext.default_pair()               # target + tokenizer + DSpark drafter
    >>> print(pair.complete(["def fibonacci(n):\\n"], max_new_tokens=48)[0])

How the artefacts are made (``scripts/build_default.sh`` rebuilds all of them): the tokenizer
(:mod:`.tokenizer`) and the LMs (:mod:`.lm`) on the corpus (:mod:`.corpus`), the drafters with
``python -m dspark_ext.train`` against the target, STS temperatures fitted on held-out rounds
(:mod:`.sts`). Held-out modules and the evaluation prompts cut from them are in ``models/``.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch

__all__ = ["DRAFTERS", "models_dir", "model_path", "heldout_prompts", "sts_temperatures",
           "DefaultPair", "default_pair", "fast_drafter_dtype"]

DRAFTERS = ("dspark", "dflash", "ar_draft", "ngram")
MODELS = ("target",) + DRAFTERS[:3]


def models_dir() -> str:
    return os.environ.get("DSPARK_DEFAULT_MODELS",
                          os.path.join(os.path.dirname(__file__), "models"))


def model_path(name: str) -> str:
    """Folder of a bundled model: ``target``, ``dspark``, ``dflash`` or ``ar_draft``."""
    if name not in MODELS:
        raise ValueError(f"name must be one of {MODELS}, got {name!r}")
    path = os.path.join(models_dir(), name)
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise FileNotFoundError(
            f"bundled model {name!r} is missing ({path}); this copy of dspark_ext was "
            "installed without its models -- rebuild them with scripts/build_default.sh")
    return path


def heldout_prompts(limit: Optional[int] = None) -> List[dict]:
    """The evaluation prompts (held-out modules only): dicts with ``module``, ``text`` and
    ``input_ids`` (the bundled tokenizer's)."""
    path = os.path.join(models_dir(), "heldout_prompts.jsonl")
    with open(path) as f:
        out = [json.loads(line) for line in f if line.strip()]
    return out[:limit] if limit is not None else out


def sts_temperatures(drafter: str = "dspark", temperature: float = 0.0) -> Optional[List[float]]:
    """STS temperatures [K] fitted on held-out rounds for decoding at ``temperature`` (the
    nearest fitted temperature), or None when the drafter has none (no confidence head)."""
    path = os.path.join(model_path(drafter), "sts.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        fits: Dict[str, List[float]] = json.load(f)["temperatures"]
    key = min(fits, key=lambda t: abs(float(t) - temperature))
    return fits[key]


@dataclass
class DefaultPair:
    """The bundled target (a transformers ``Qwen3ForCausalLM``), its tokenizer and one drafter
    (any :class:`~dspark_ext.drafters.Drafter`)."""

    target: torch.nn.Module
    tokenizer: object
    drafter: object
    drafter_name: str
    gamma: int = 7
    _decoder: object = field(default=None, repr=False)

    @property
    def eos_token_id(self) -> int:
        return self.tokenizer.eos_token_id

    def decoder(self):
        from ..decoding import SpeculativeDecoder
        if self._decoder is None:
            self._decoder = SpeculativeDecoder(self.target, self.drafter, gamma=self.gamma)
        return self._decoder

    def encode(self, texts: Sequence[str]) -> List[List[int]]:
        return [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]

    def complete(self, texts: Sequence[str], max_new_tokens: int = 64, temperature: float = 0.0,
                 seed: int = 0, **kwargs) -> List[str]:
        """Speculative continuations of ``texts`` (batched), decoded to text."""
        out = self.decoder().generate(
            self.encode(texts), max_new_tokens=max_new_tokens, temperature=temperature,
            seed=seed, eos_token_id=self.eos_token_id,
            verify=kwargs.pop("verify", "greedy" if temperature == 0 else "token"), **kwargs)
        return [self.tokenizer.decode(t) for t in out.new_tokens]


def load_target(dtype: torch.dtype = torch.float32, device="cpu"):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(model_path("target"), dtype=dtype).to(
        device).eval()


def load_drafter(name: str, dtype: torch.dtype = torch.float32, device="cpu"):
    from ..drafters import ModelDrafter, NgramDrafter
    if name == "ngram":
        return NgramDrafter()
    if name == "ar_draft":
        from transformers import AutoModelForCausalLM
        small = AutoModelForCausalLM.from_pretrained(model_path("ar_draft"), dtype=dtype)
        return ModelDrafter(small.to(device).eval())
    from ..drafters.dspark import DSparkDrafter
    return DSparkDrafter.from_pretrained(model_path(name), dtype=dtype, device=device).eval()


def fast_drafter_dtype(dtype: torch.dtype, device="cpu") -> torch.dtype:
    """The dtype the drafter runs fastest in next to a ``dtype`` target on ``device``.

    On a CPU with native bfloat16 matrix units (AVX512-BF16, AMX; oneDNN reports them), a
    drafter's small-M GEMMs (7 block rows against a [4096 x 256] LM head) run about 3x faster
    in bfloat16 than in float32, and the bundled drafters' weights are bfloat16 already, so
    nothing is rounded that was not. Verification stays exact whatever the drafter's dtype
    (the op reads the law the drafts were sampled from); only the acceptance rate can move.
    Elsewhere (CUDA, CPUs without bfloat16 units) the target's dtype."""
    if torch.device(device).type == "cpu" and dtype == torch.float32:
        try:
            if torch.ops.mkldnn._is_mkldnn_bf16_supported():
                return torch.bfloat16
        except (AttributeError, RuntimeError):  # a build without oneDNN
            pass
    return dtype


def default_pair(drafter: str = "dspark", dtype: torch.dtype = torch.float32, device="cpu",
                 gamma: int = 7, drafter_dtype: Optional[torch.dtype] = None) -> DefaultPair:
    """The bundled target, tokenizer and ``drafter`` (one of :data:`DRAFTERS`), loaded from the
    installed package: no paths, no downloads. The target runs in ``dtype``; the DSpark /
    DFlash drafter in ``drafter_dtype`` (default: :func:`fast_drafter_dtype`)."""
    if drafter not in DRAFTERS:
        raise ValueError(f"drafter must be one of {DRAFTERS}, got {drafter!r}")
    from .tokenizer import load_tokenizer
    target = load_target(dtype, device)
    tok = load_tokenizer(model_path("target"))
    if drafter_dtype is None:
        drafter_dtype = fast_drafter_dtype(dtype, device) if drafter in ("dspark", "dflash") \
            else dtype
    return DefaultPair(target, tok, load_drafter(drafter, drafter_dtype, device), drafter,
                       gamma)
