"""``as_target``: what the decoder and the small-LM drafter call to accept either a
:class:`~dspark_ext.targets.base.Target` adapter or a transformers causal LM."""
from __future__ import annotations

from .base import Target


def as_target(target) -> Target:
    """A :class:`Target` adapter as is; a Hugging Face causal LM wrapped in HFTarget."""
    if hasattr(target, "prefill") and hasattr(target, "truncate"):
        return target
    if hasattr(target, "config") and hasattr(target, "get_input_embeddings"):
        from .hf_target import HFTarget
        return HFTarget(target)
    raise TypeError(f"target must be a Target adapter (prefill/forward/truncate) or a Hugging "
                    f"Face causal LM, got {type(target).__name__}")
