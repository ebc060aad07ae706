"""DSparkConfig: the drafter's configuration, laid out as DeepSpec writes it (design §7).

A DeepSpec drafter config is a deep copy of the target's Qwen3 config (hidden size, heads,
RoPE, ...) with the drafter's own fields added (``block_size``, ``target_layer_ids``,
``markov_rank``, ...). This class reads the fields the drafter needs, validates them with
messages that name the field, and keeps every other key untouched so that a DeepSpec
``config.json`` survives ``from_dict(d).to_dict()`` unchanged.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Mapping, Optional

from .errors import ConfigError

__all__ = ["ConfigError", "DSparkConfig", "HEAD_TYPES", "MAX_MARKOV_RANK"]

HEAD_TYPES = ("vanilla", "gated", "rnn")
MAX_MARKOV_RANK = 512  # dspark::markov_sample's limit (csrc/core/markov_math.h)
_ROPE_TYPES = ("default", "linear")
_ACTIVATIONS = ("silu", "gelu", "gelu_pytorch_tanh", "relu")

# Keys whose meaning DSparkConfig owns; everything else round-trips through ``extra``.
_ROPE_KEYS = ("rope_parameters", "rope_theta", "rope_scaling")
_OPTIONAL_KEYS = ("markov_head_type", "confidence_head_with_markov", "head_dim", "architectures",
                  "markov_topk")
# vLLM's older name of markov_topk (its speculative config's dspark_draft_topk, also read from
# the drafter's config); kept under that name when a config came with it.
_LEGACY_TOPK_KEY = "dspark_draft_topk"


@dataclass
class DSparkConfig:
    """Architecture and drafting hyper-parameters of a DSpark / DFlash drafter.

    The Qwen3 fields mirror the target's config; the DSpark fields are those of design §7.
    ``rope_type`` / ``rope_theta`` / ``rope_factor`` are read from transformers-5
    ``rope_parameters`` or the older ``rope_theta`` + ``rope_scaling`` and written back in the
    form they came in. ``extra`` holds every key this class does not interpret.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_attention_heads: int
    num_key_value_heads: int
    num_hidden_layers: int          # draft layers
    num_target_layers: int
    target_layer_ids: List[int]
    block_size: int
    mask_token_id: int
    head_dim: Optional[int] = None  # None: hidden_size // num_attention_heads
    rms_norm_eps: float = 1e-6
    rope_theta: float = 10000.0
    rope_type: str = "default"
    rope_factor: float = 1.0        # 'linear' RoPE: positions divided by this factor
    max_position_embeddings: int = 32768
    attention_bias: bool = False
    hidden_act: str = "silu"
    initializer_range: float = 0.02
    tie_word_embeddings: bool = False
    num_anchors: int = 512
    markov_rank: int = 0
    markov_head_type: Optional[str] = None
    enable_confidence_head: bool = False
    confidence_head_with_markov: bool = False
    # Top-k Markov correction (vLLM's markov_topk / dspark_draft_topk): the Markov bias only
    # for each position's markov_topk largest base logits, every other logit -inf. None or 0:
    # the dense correction over the whole vocabulary.
    markov_topk: Optional[int] = None
    architectures: List[str] = field(default_factory=lambda: ["Qwen3DSparkModel"])
    extra: Dict[str, Any] = field(default_factory=dict)
    # How the source spelled RoPE ({"rope_parameters": {...}} or {"rope_theta", "rope_scaling"}),
    # so that to_dict writes it back alike; empty: transformers-5 rope_parameters.
    _rope_source: Dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    # Optional keys that were present in the source dict (DeepSpec writes some only sometimes).
    _present: Optional[tuple] = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.head_dim is None:
            _require_positive(self, "num_attention_heads")
            self.head_dim = self.hidden_size // self.num_attention_heads
        self.target_layer_ids = [int(i) for i in self.target_layer_ids]
        if self.markov_rank > 0 and self.markov_head_type is None:
            self.markov_head_type = "vanilla"
        self.validate()

    # ----------------------------------------------------------------- validation
    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first inconsistent field."""
        for name in ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
                     "num_key_value_heads", "num_hidden_layers", "num_target_layers",
                     "head_dim", "block_size", "max_position_embeddings"):
            _require_positive(self, name)
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"num_attention_heads ({self.num_attention_heads}) must be a multiple of "
                f"num_key_value_heads ({self.num_key_value_heads})")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim must be even for rotary embeddings, got {self.head_dim}")
        if not (isinstance(self.rms_norm_eps, (int, float)) and self.rms_norm_eps > 0):
            raise ConfigError(f"rms_norm_eps must be > 0, got {self.rms_norm_eps!r}")
        self._validate_target_layers()
        if not 0 <= self.mask_token_id < self.vocab_size:
            raise ConfigError(f"mask_token_id must lie in [0, vocab_size = {self.vocab_size}), "
                              f"got {self.mask_token_id}")
        if self.num_anchors < 1:
            raise ConfigError(f"num_anchors must be >= 1, got {self.num_anchors}")
        self._validate_heads()
        if self.rope_type not in _ROPE_TYPES:
            raise ConfigError(f"rope type {self.rope_type!r} (rope_parameters.rope_type / "
                              f"rope_scaling.rope_type) is not supported; use one of "
                              f"{_ROPE_TYPES}")
        if not (math.isfinite(self.rope_theta) and self.rope_theta > 0):
            raise ConfigError(f"rope_theta must be a positive number, got {self.rope_theta!r}")
        if not (math.isfinite(self.rope_factor) and self.rope_factor > 0):
            raise ConfigError(f"rope factor (rope_scaling.factor) must be > 0, got "
                              f"{self.rope_factor!r}")
        if self.hidden_act not in _ACTIVATIONS:
            raise ConfigError(f"hidden_act {self.hidden_act!r} is not supported; use one of "
                              f"{_ACTIVATIONS}")
        layer_types = self.extra.get("layer_types")
        if layer_types is not None and any(t != "full_attention" for t in layer_types):
            raise ConfigError(f"layer_types must all be 'full_attention' for a drafter (DeepSpec "
                              f"writes them so), got {layer_types!r}")

    def _validate_target_layers(self) -> None:
        ids = self.target_layer_ids
        if not ids:
            raise ConfigError("target_layer_ids must not be empty")
        last = self.num_target_layers - 2  # the final target layer is excluded (see below)
        for prev, cur in zip(ids, ids[1:]):
            if cur <= prev:
                raise ConfigError(f"target_layer_ids must be strictly increasing, got {ids}")
        for i in ids:
            if i == self.num_target_layers - 1:
                # DeepSpec's assert_no_final_target_layer: transformers' output_hidden_states
                # holds the *normed* final output there, not the raw layer output.
                raise ConfigError(
                    f"target_layer_ids must not include the final target layer "
                    f"{self.num_target_layers - 1} (num_target_layers = "
                    f"{self.num_target_layers}): its hidden state is the normed output; got {ids}")
            if not (i == -1 or 0 <= i <= last):
                raise ConfigError(f"target_layer_ids entries must lie in {{-1}} U [0, {last}] for "
                                  f"num_target_layers = {self.num_target_layers}, got {ids}")

    def _validate_heads(self) -> None:
        if self.markov_rank < 0 or self.markov_rank > MAX_MARKOV_RANK:
            raise ConfigError(f"markov_rank must lie in [0, {MAX_MARKOV_RANK}] (0 = no Markov "
                              f"head; {MAX_MARKOV_RANK} is the markov_sample op's limit), got "
                              f"{self.markov_rank}")
        if self.markov_rank > 0 and self.markov_head_type not in HEAD_TYPES:
            raise ConfigError(f"markov_head_type must be one of {HEAD_TYPES}, got "
                              f"{self.markov_head_type!r}")
        if self.markov_topk is not None and self.markov_topk != 0:
            if self.markov_rank == 0:
                raise ConfigError("markov_topk requires a Markov head (markov_rank > 0): it "
                                  "limits the Markov correction to the top-k base logits")
            if not 1 <= self.markov_topk <= self.vocab_size:
                raise ConfigError(f"markov_topk must lie in [1, vocab_size = {self.vocab_size}] "
                                  f"(0 or None: the dense correction), got {self.markov_topk}")
        if self.confidence_head_with_markov and self.enable_confidence_head \
                and self.markov_rank == 0:
            raise ConfigError("confidence_head_with_markov requires markov_rank > 0 (the "
                              "confidence head reads the Markov embedding W1[x_{k-1}])")

    # ----------------------------------------------------------------- derived values
    @property
    def has_markov_head(self) -> bool:
        return self.markov_rank > 0

    @property
    def draft_topk(self) -> Optional[int]:
        """The top-k of the Markov correction, or None for the dense one."""
        return self.markov_topk if self.has_markov_head and self.markov_topk else None

    @property
    def confidence_uses_markov(self) -> bool:
        return self.enable_confidence_head and self.confidence_head_with_markov

    @property
    def feature_size(self) -> int:
        """Width F of the concatenated target features that ``fc`` projects."""
        return len(self.target_layer_ids) * self.hidden_size

    # ----------------------------------------------------------------- (de)serialisation
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DSparkConfig":
        """Read a DeepSpec / HF config dict; unknown keys are kept in ``extra``."""
        data = dict(data)
        if isinstance(data.get("text_config"), Mapping):  # multimodal wrappers (Gemma 4 etc.)
            raise ConfigError("config has a text_config: only Qwen3-style drafter configs "
                              "are supported")
        known = {f.name for f in dataclasses.fields(cls)} - {"extra", "_rope_source", "_present"}
        kwargs: Dict[str, Any] = {}
        for name in known - {"rope_theta", "rope_type", "rope_factor"}:
            if name in data and data[name] is not None:
                kwargs[name] = data[name]
        missing = [n for n in ("vocab_size", "hidden_size", "intermediate_size",
                               "num_attention_heads", "num_hidden_layers", "target_layer_ids",
                               "num_target_layers", "block_size", "mask_token_id")
                   if n not in kwargs]
        if missing:
            raise ConfigError(f"config is missing required field(s) {missing}")
        kwargs.setdefault("num_key_value_heads", kwargs["num_attention_heads"])
        if "markov_topk" not in data and data.get(_LEGACY_TOPK_KEY) is not None:
            kwargs["markov_topk"] = data[_LEGACY_TOPK_KEY]
        kwargs.update(_read_rope(data))
        kwargs = {k: _coerce(k, v) for k, v in kwargs.items()}
        extra = {k: copy.deepcopy(v) for k, v in data.items()
                 if k not in known and k not in _ROPE_KEYS}
        rope_source = {k: copy.deepcopy(data[k]) for k in _ROPE_KEYS if k in data}
        present = tuple(k for k in _OPTIONAL_KEYS if k in data)
        try:
            return cls(**kwargs, extra=extra, _rope_source=rope_source, _present=present)
        except TypeError as exc:  # wrong value types in the JSON
            raise ConfigError(f"bad config value: {exc}") from None

    def to_dict(self) -> Dict[str, Any]:
        """The config as DeepSpec's ``save_pretrained`` writes it (JSON-serialisable)."""
        # Built in code (no source dict): write what DeepSpec's build_draft_config writes.
        present = set(("head_dim", "architectures") if self._present is None else self._present)
        out: Dict[str, Any] = copy.deepcopy(self.extra)
        for f in dataclasses.fields(self):
            if f.name in ("extra", "_rope_source", "_present", "rope_theta", "rope_type",
                          "rope_factor"):
                continue
            out[f.name] = copy.deepcopy(getattr(self, f.name))
        if self.markov_rank == 0 and "markov_head_type" not in present:
            out.pop("markov_head_type")
        if not self.enable_confidence_head and "confidence_head_with_markov" not in present:
            out.pop("confidence_head_with_markov")
        for key in ("head_dim", "architectures"):
            if key not in present:
                out.pop(key)
        if _LEGACY_TOPK_KEY in out and "markov_topk" not in present:
            out[_LEGACY_TOPK_KEY] = out.pop("markov_topk")  # written back under its own name
        elif self.markov_topk is None and "markov_topk" not in present:
            out.pop("markov_topk")
        out.update(_write_rope(self))
        return out

    @classmethod
    def from_json_file(cls, path) -> "DSparkConfig":
        with open(path, "r", encoding="utf-8") as f:
            try:
                data = json.load(f)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{path}: not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def to_json_file(self, path) -> None:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=True)
            f.write("\n")

    @classmethod
    def for_target(cls, target_config, *, block_size: int, num_hidden_layers: int,
                   target_layer_ids, mask_token_id: int, markov_rank: int = 256,
                   markov_head_type: str = "vanilla", enable_confidence_head: bool = True,
                   confidence_head_with_markov: bool = True,
                   num_anchors: int = 512) -> "DSparkConfig":
        """A drafter config for ``target_config`` (an HF config object or dict), as DeepSpec's
        ``build_draft_config`` makes it: a copy of the target's fields plus the drafter's.
        DFlash baseline: ``markov_rank=0, enable_confidence_head=False``."""
        data = target_config.to_dict() if hasattr(target_config, "to_dict") else dict(target_config)
        data = copy.deepcopy(data)
        if isinstance(data.get("text_config"), Mapping):
            raise ConfigError("target config has a text_config: pass the text model's config")
        if "num_hidden_layers" not in data:
            raise ConfigError("target config is missing num_hidden_layers")
        data.update(
            architectures=["Qwen3DSparkModel"],
            num_target_layers=int(data["num_hidden_layers"]),
            num_hidden_layers=int(num_hidden_layers),
            block_size=int(block_size),
            tie_word_embeddings=False,
            layer_types=["full_attention"] * int(num_hidden_layers),
            mask_token_id=int(mask_token_id),
            target_layer_ids=[int(i) for i in target_layer_ids],
            num_anchors=int(num_anchors),
            enable_confidence_head=bool(enable_confidence_head),
            markov_rank=int(markov_rank),
        )
        for key in ("markov_head_type", "confidence_head_with_markov"):
            data.pop(key, None)
        if enable_confidence_head:
            data["confidence_head_with_markov"] = bool(confidence_head_with_markov)
        if markov_rank > 0:
            data["markov_head_type"] = str(markov_head_type)
        return cls.from_dict(data)


def _require_positive(cfg: DSparkConfig, name: str) -> None:
    value = getattr(cfg, name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


_INT_FIELDS = ("vocab_size", "hidden_size", "intermediate_size", "num_attention_heads",
               "num_key_value_heads", "num_hidden_layers", "num_target_layers", "block_size",
               "mask_token_id", "head_dim", "max_position_embeddings", "num_anchors",
               "markov_rank", "markov_topk")
_BOOL_FIELDS = ("attention_bias", "tie_word_embeddings", "enable_confidence_head",
                "confidence_head_with_markov")
_FLOAT_FIELDS = ("rms_norm_eps", "rope_theta", "rope_factor", "initializer_range")


def _coerce(name: str, value: Any) -> Any:
    """JSON values to the field's type, with an error naming the field."""
    try:
        if name in _INT_FIELDS:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if name in _BOOL_FIELDS:
            if not isinstance(value, (bool, int)):
                raise ValueError
            return bool(value)
        if name in _FLOAT_FIELDS:
            return float(value)
        if name == "target_layer_ids":
            return [_coerce("mask_token_id", i) for i in value]
        if name in ("markov_head_type", "hidden_act", "rope_type"):
            return str(value).lower()
    except (TypeError, ValueError):
        raise ConfigError(f"{name} has an invalid value {value!r}") from None
    return value


def _read_rope(data: Mapping[str, Any]) -> Dict[str, Any]:
    """rope_type / rope_theta / rope_factor from either spelling of the RoPE settings."""
    params = data.get("rope_parameters")
    if isinstance(params, Mapping):
        source = params
        theta = params.get("rope_theta", data.get("rope_theta", 10000.0))
    else:
        source = data.get("rope_scaling") or {}
        theta = data.get("rope_theta", 10000.0)
        if not isinstance(source, Mapping):
            raise ConfigError(f"rope_scaling must be a dict or null, got {source!r}")
    if float(source.get("partial_rotary_factor", 1.0)) != 1.0:
        raise ConfigError("partial_rotary_factor != 1 (rope_parameters) is not supported")
    # Lower-cased before the factor is read: "LINEAR" is linear RoPE with its factor.
    rope_type = str(source.get("rope_type", source.get("type", "default"))).lower()
    factor = source.get("factor", 1.0) if rope_type == "linear" else 1.0
    return {"rope_theta": theta, "rope_type": rope_type, "rope_factor": factor}


def _write_rope(cfg: DSparkConfig) -> Dict[str, Any]:
    """The RoPE keys in the spelling the config was read in (transformers-5 style if new)."""
    src = copy.deepcopy(cfg._rope_source)
    if "rope_parameters" in src or not src:
        params = dict(src.get("rope_parameters") or {})
        params.update(rope_type=cfg.rope_type, rope_theta=cfg.rope_theta)
        if cfg.rope_type == "linear":
            params["factor"] = cfg.rope_factor
        src["rope_parameters"] = params
        if "rope_theta" in src:
            src["rope_theta"] = cfg.rope_theta
        return src
    src["rope_theta"] = cfg.rope_theta
    scaling = src.get("rope_scaling")
    if cfg.rope_type == "linear":
        scaling = dict(scaling or {})
        scaling.setdefault("rope_type", "linear")
        scaling["factor"] = cfg.rope_factor
    src["rope_scaling"] = scaling
    return src
