"""The speculative decoding loop (:mod:`.decoder`), the batch it runs (:mod:`.batch`), one
verification step (:mod:`.verification`), output bookkeeping (:mod:`.emit`), the length
policies (:mod:`.policies`), opt-in observers and statistics (:mod:`.observers`,
:mod:`.stats`) and input normalisation (:mod:`.inputs`, :mod:`.warp`)."""
from ..profiling import PhaseTimer, phase
from ..targets.adapt import as_target
from .batch import BatchState
from .decoder import GenerationOutput, SpeculativeDecoder
from .observers import RoundObserver, StatsRecorder
from .policies import FixedLength, Scheduled, StaticThreshold
from .stats import GenerationStats, RoundStats

__all__ = ["BatchState", "FixedLength", "GenerationOutput", "GenerationStats", "PhaseTimer",
           "RoundObserver", "RoundStats", "Scheduled", "SpeculativeDecoder", "StaticThreshold",
           "StatsRecorder", "as_target", "phase"]
