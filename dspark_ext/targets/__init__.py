"""Target adapters: the model being sped up, behind one small protocol (:class:`Target`)."""
from .adapt import as_target
from .base import Target, TargetStep, check_feature_layers, check_target_layer_ids
from .kv_cache import KVCache
from .torch_target import TorchTarget


def __getattr__(name):  # HFTarget imports transformers lazily (an optional extra)
    if name == "HFTarget":
        from .hf_target import HFTarget
        return HFTarget
    raise AttributeError(name)


__all__ = ["HFTarget", "KVCache", "Target", "TargetStep", "TorchTarget", "as_target",
           "check_feature_layers", "check_target_layer_ids"]
