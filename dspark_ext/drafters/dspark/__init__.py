"""The DSpark / DFlash drafter model (design §4, §7): plain torch, DeepSpec-compatible weights.

* :class:`DSparkConfig` -- configuration (DeepSpec's config.json layout), ``for_target`` helper;
* :class:`DSparkDrafter` -- the model; implements :class:`dspark_ext.drafters.base.Drafter`
  (``reset`` / ``update`` / ``draft`` / ``select_rows``), ``from_pretrained`` /
  ``save_pretrained``, ``init_from_target`` and the training step ``teacher_forced``;
* :func:`block_attention_mask` -- the training forward's attention mask.

The float64 ground truth of the tests is :mod:`dspark_ext.reference.drafter`.
"""
from .config import DSparkConfig
from .context_cache import ContextKVCache
from .errors import CheckpointError, ConfigError
from .model import DSparkDrafter
from .training import TeacherForced, block_attention_mask, block_targets

__all__ = ["CheckpointError", "ConfigError", "ContextKVCache", "DSparkConfig", "DSparkDrafter",
           "TeacherForced", "block_attention_mask", "block_targets"]
