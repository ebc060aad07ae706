"""Proposers behind one small protocol (:class:`Drafter`): DSpark / DFlash
(:mod:`dspark_ext.drafters.dspark`), prompt lookup (:class:`NgramDrafter`) and any small
causal LM (:class:`ModelDrafter`)."""
from .base import ContextUpdate, DraftBlock, Drafter
from .model import ModelDrafter
from .ngram import NgramDrafter


def __getattr__(name):
    if name in ("DSparkDrafter", "DSparkConfig"):
        import importlib
        return getattr(importlib.import_module(".dspark", __name__), name)
    raise AttributeError(name)


__all__ = ["ContextUpdate", "DSparkConfig", "DSparkDrafter", "DraftBlock", "Drafter",
           "ModelDrafter", "NgramDrafter"]
