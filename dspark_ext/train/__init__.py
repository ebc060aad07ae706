"""Training DSpark / DFlash drafters against a frozen target that runs online (design §7).

* :mod:`.data` -- text / chat JSONL / pre-tokenised data with a loss mask, regeneration of
  responses by the target, the resumable data order;
* :mod:`.online_target` -- the target's features and last hidden state, no disk cache;
* :mod:`.cache` -- the optional on-disk bf16 cache (size printed before writing);
* :mod:`.anchors` -- anchor sampling among supervised positions;
* :mod:`.losses` -- 0.1 CE + 0.9 L1 + 1.0 BCE(confidence, c*), weights exp(-k/4);
* :mod:`.optim` -- AdamW, warm-up + cosine;
* :mod:`.trainer` -- the loop (accumulation, clipping, bf16 autocast, logging);
* :mod:`.checkpoint` -- DeepSpec-format drafter + optimizer/scheduler/RNG/data position;
* :mod:`.distributed` -- torchrun: DDP or FSDP2 (gloo on CPU, NCCL on GPU).

Command line: ``python -m dspark_ext.train --help``.
"""
from .anchors import anchor_candidates, sample_anchors
from .cache import CachedTarget, HiddenStateCache, build_cache
from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .data import DataOrder, Example, collate, load_examples, regenerate
from .distributed import DistInfo, init_distributed
from .losses import LossConfig, combine, loss_terms, position_weights
from .online_target import OnlineTarget, cache_bytes
from .optim import build_optimizer, warmup_cosine
from .trainer import TrainConfig, Trainer

__all__ = ["CachedTarget", "DataOrder", "DistInfo", "Example", "HiddenStateCache",
           "LossConfig", "OnlineTarget", "TrainConfig", "Trainer", "anchor_candidates",
           "build_cache", "build_optimizer", "cache_bytes", "collate", "combine",
           "init_distributed", "latest_checkpoint", "load_checkpoint", "load_examples",
           "loss_terms", "position_weights", "regenerate", "sample_anchors", "save_checkpoint",
           "warmup_cosine"]
