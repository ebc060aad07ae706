"""The speculative decoding loop, its length policies and its statistics."""
from .decoder import GenerationOutput, SpeculativeDecoder, as_target
from .policies import FixedLength, Scheduled, StaticThreshold
from .profile import PhaseTimer, phase
from .stats import GenerationStats, RoundStats

__all__ = ["FixedLength", "GenerationOutput", "GenerationStats", "PhaseTimer", "RoundStats",
           "Scheduled", "SpeculativeDecoder", "StaticThreshold", "as_target", "phase"]
