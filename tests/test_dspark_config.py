"""DSparkConfig as values (issue 21, mutation testing of drafters/dspark/config.py): exact
dicts out of ``for_target`` and ``to_dict``, every RoPE spelling read and written back, the
exact error messages, type coercion, and the JSON file's exact text."""
import copy
import json
import re

import pytest

from dspark_ext.drafters.dspark import ConfigError, DSparkConfig


def exact(msg):
    """A pytest.raises pattern matching ``msg`` and nothing else."""
    return "^" + re.escape(msg) + "$"


TARGET = dict(vocab_size=50, hidden_size=16, intermediate_size=32, num_attention_heads=4,
              num_key_value_heads=2, num_hidden_layers=6, rms_norm_eps=1e-5,
              max_position_embeddings=256, rope_theta=5000.0, head_dim=4,
              architectures=["Qwen3ForCausalLM"], tie_word_embeddings=True, model_type="qwen3",
              markov_head_type="stale", confidence_head_with_markov=False, hidden_act="silu")

# What for_target writes besides the target's own fields (DeepSpec's build_draft_config).
DRAFT_FIELDS = dict(architectures=["Qwen3DSparkModel"], num_target_layers=6,
                    num_hidden_layers=2, block_size=5, tie_word_embeddings=False,
                    layer_types=["full_attention", "full_attention"], mask_token_id=49,
                    target_layer_ids=[0, 3], num_anchors=512, enable_confidence_head=True,
                    markov_rank=256, markov_head_type="vanilla",
                    confidence_head_with_markov=True)
# DSparkConfig's defaults, as to_dict writes them.
DEFAULTS = dict(attention_bias=False, initializer_range=0.02)


def _for_target(**kw):
    args = dict(block_size=5, num_hidden_layers=2, target_layer_ids=[0, 3], mask_token_id=49)
    args.update(kw)
    return DSparkConfig.for_target(TARGET, **args)


def test_for_target_writes_exactly_deepspecs_fields():
    target = copy.deepcopy(TARGET)
    d = _for_target().to_dict()
    want = {**TARGET, **DRAFT_FIELDS, **DEFAULTS, "rope_scaling": None}
    assert d == want
    assert TARGET == target  # the caller's config is not touched


def test_for_target_options():
    d = _for_target(markov_rank=1, markov_head_type="gated", confidence_head_with_markov=False,
                    num_anchors=9).to_dict()
    assert (d["markov_rank"], d["markov_head_type"], d["confidence_head_with_markov"],
            d["num_anchors"]) == (1, "gated", False, 9)
    dflash = _for_target(markov_rank=0, enable_confidence_head=False).to_dict()
    assert "markov_head_type" not in dflash and "confidence_head_with_markov" not in dflash
    assert dflash["markov_rank"] == 0 and dflash["enable_confidence_head"] is False
    conf_only = _for_target(markov_rank=0, confidence_head_with_markov=False).to_dict()
    assert conf_only["confidence_head_with_markov"] is False
    assert "markov_head_type" not in conf_only


class _HFConfig:
    def __init__(self, d):
        self._d = d

    def to_dict(self):
        return dict(self._d)


def test_for_target_takes_an_hf_config_object():
    assert DSparkConfig.for_target(_HFConfig(TARGET), block_size=5, num_hidden_layers=2,
                                   target_layer_ids=[0, 3], mask_token_id=49).to_dict() == \
        _for_target().to_dict()


def test_for_target_errors():
    with pytest.raises(ConfigError, match=exact("target config has a text_config: pass the "
                                                "text model's config")):
        DSparkConfig.for_target({**TARGET, "text_config": {}}, block_size=5,
                                num_hidden_layers=2, target_layer_ids=[0], mask_token_id=1)
    bad = dict(TARGET)
    del bad["num_hidden_layers"]
    with pytest.raises(ConfigError, match=exact("target config is missing num_hidden_layers")):
        DSparkConfig.for_target(bad, block_size=5, num_hidden_layers=2, target_layer_ids=[0],
                                mask_token_id=1)


def _base(**kw):
    d = _for_target().to_dict()
    d.update(kw)
    return d


@pytest.mark.parametrize("rope, want, written", [
    # transformers-5 rope_parameters, linear
    (dict(rope_parameters={"rope_type": "linear", "rope_theta": 1e4, "factor": 2.0}),
     ("linear", 1e4, 2.0), dict(rope_parameters={"rope_type": "linear", "rope_theta": 1e4,
                                                 "factor": 2.0})),
    # rope_parameters without rope_theta, next to a top-level rope_theta (kept and updated)
    (dict(rope_parameters={"rope_type": "default"}, rope_theta=300.0),
     ("default", 300.0, 1.0), dict(rope_parameters={"rope_type": "default",
                                                    "rope_theta": 300.0}, rope_theta=300.0)),
    # a factor is read only for linear RoPE
    (dict(rope_parameters={"rope_type": "default", "factor": 8.0, "rope_theta": 7.0}),
     ("default", 7.0, 1.0), dict(rope_parameters={"rope_type": "default", "factor": 8.0,
                                                  "rope_theta": 7.0})),
    # legacy rope_theta + rope_scaling spelt with "type"
    (dict(rope_theta=500.0, rope_scaling={"type": "linear", "factor": 4.0}),
     ("linear", 500.0, 4.0), dict(rope_theta=500.0, rope_scaling={
         "type": "linear", "factor": 4.0, "rope_type": "linear"})),
    (dict(rope_theta=500.0, rope_scaling=None), ("default", 500.0, 1.0),
     dict(rope_theta=500.0, rope_scaling=None)),
    # nothing at all: the defaults, written the transformers-5 way
    ({}, ("default", 10000.0, 1.0),
     dict(rope_parameters={"rope_type": "default", "rope_theta": 10000.0})),
    (dict(rope_parameters={"rope_type": "default", "partial_rotary_factor": 1.0}),
     ("default", 10000.0, 1.0), dict(rope_parameters={
         "rope_type": "default", "partial_rotary_factor": 1.0, "rope_theta": 10000.0})),
])
def test_rope_spellings(rope, want, written):
    d = _base()
    for key in ("rope_theta", "rope_scaling", "rope_parameters"):
        d.pop(key, None)
    d.update(copy.deepcopy(rope))
    cfg = DSparkConfig.from_dict(d)
    assert (cfg.rope_type, cfg.rope_theta, cfg.rope_factor) == want
    out = cfg.to_dict()
    assert {k: out[k] for k in written} == written
    assert not {"rope_theta", "rope_scaling", "rope_parameters"} - set(written) & set(out)


def test_rope_written_back_after_a_change():
    d = _base(rope_theta=500.0, rope_scaling={"rope_type": "linear", "factor": 4.0})
    cfg = DSparkConfig.from_dict(d)
    cfg.rope_factor, cfg.rope_theta = 3.0, 250.0
    out = cfg.to_dict()
    assert out["rope_scaling"] == {"rope_type": "linear", "factor": 3.0}
    assert out["rope_theta"] == 250.0
    cfg.rope_type = "default"
    assert cfg.to_dict()["rope_scaling"] == {"rope_type": "linear", "factor": 4.0}
    both = DSparkConfig.from_dict(_base(rope_parameters={"rope_type": "default"},
                                        rope_theta=300.0))
    both.rope_theta = 40.0  # the top-level key follows the config too
    assert both.to_dict()["rope_theta"] == 40.0
    assert both.to_dict()["rope_parameters"]["rope_theta"] == 40.0
    p = DSparkConfig.from_dict(_base(rope_parameters={"rope_type": "linear", "factor": 2.0}))
    p.rope_factor = 5.0
    # rope_theta from the top-level key (5000.0) since rope_parameters has none
    assert p.to_dict()["rope_parameters"] == {"rope_type": "linear", "factor": 5.0,
                                              "rope_theta": 5000.0}


@pytest.mark.parametrize("rope, msg", [
    (dict(rope_scaling=3), "rope_scaling must be a dict or null, got 3"),
    (dict(rope_parameters={"rope_type": "default", "partial_rotary_factor": 0.5}),
     "partial_rotary_factor != 1 (rope_parameters) is not supported"),
    (dict(rope_scaling={"rope_type": "dynamic"}),
     "rope type 'dynamic' (rope_parameters.rope_type / rope_scaling.rope_type) is not "
     "supported; use one of ('default', 'linear')"),
    (dict(rope_theta=-1.0), "rope_theta must be a positive number, got -1.0"),
    (dict(rope_scaling={"rope_type": "linear", "factor": 0.0}),
     "rope factor (rope_scaling.factor) must be > 0, got 0.0"),
])
def test_rope_errors(rope, msg):
    d = _base()
    d.pop("rope_scaling")
    d.update(rope)
    with pytest.raises(ConfigError, match=exact(msg)):
        DSparkConfig.from_dict(d)


@pytest.mark.parametrize("field, value, msg", [
    ("vocab_size", 0, "vocab_size must be a positive integer, got 0"),
    ("hidden_size", -3, "hidden_size must be a positive integer, got -3"),
    ("num_key_value_heads", 3, "num_attention_heads (4) must be a multiple of "
                               "num_key_value_heads (3)"),
    ("head_dim", 3, "head_dim must be even for rotary embeddings, got 3"),
    ("rms_norm_eps", 0.0, "rms_norm_eps must be > 0, got 0.0"),
    ("target_layer_ids", [], "target_layer_ids must not be empty"),
    ("target_layer_ids", [3, 1], "target_layer_ids must be strictly increasing, got [3, 1]"),
    ("target_layer_ids", [0, 5], "target_layer_ids must not include the final target layer 5 "
                                 "(num_target_layers = 6): its hidden state is the normed "
                                 "output; got [0, 5]"),
    ("target_layer_ids", [-2], "target_layer_ids entries must lie in {-1} U [0, 4] for "
                               "num_target_layers = 6, got [-2]"),
    ("target_layer_ids", [7], "target_layer_ids entries must lie in {-1} U [0, 4] for "
                              "num_target_layers = 6, got [7]"),
    ("mask_token_id", 50, "mask_token_id must lie in [0, vocab_size = 50), got 50"),
    ("mask_token_id", -1, "mask_token_id must lie in [0, vocab_size = 50), got -1"),
    ("num_anchors", 0, "num_anchors must be >= 1, got 0"),
    ("markov_rank", 513, "markov_rank must lie in [0, 512] (0 = no Markov head; 512 is the "
                         "markov_sample op's limit), got 513"),
    ("markov_head_type", "lstm", "markov_head_type must be one of ('vanilla', 'gated', "
                                 "'rnn'), got 'lstm'"),
    ("hidden_act", "tanh", "hidden_act 'tanh' is not supported; use one of ('silu', 'gelu', "
                           "'gelu_pytorch_tanh', 'relu')"),
    ("layer_types", ["sliding_attention", "full_attention"],
     "layer_types must all be 'full_attention' for a drafter (DeepSpec writes them so), got "
     "['sliding_attention', 'full_attention']"),
    ("markov_topk", 51, "markov_topk must lie in [1, vocab_size = 50] (0 or None: the dense "
                        "correction), got 51"),
])
def test_validation_messages(field, value, msg):
    with pytest.raises(ConfigError, match=exact(msg)):
        DSparkConfig.from_dict(_base(**{field: value}))


def test_boundaries_that_are_valid():
    for field, value in (("target_layer_ids", [-1, 4]), ("mask_token_id", 0),
                         ("mask_token_id", 49), ("num_anchors", 1), ("markov_rank", 512),
                         ("markov_topk", 50), ("markov_topk", 1),
                         ("num_key_value_heads", 4), ("rms_norm_eps", 1e-12)):
        DSparkConfig.from_dict(_base(**{field: value}))
    DSparkConfig.from_dict(_base(markov_rank=0, confidence_head_with_markov=False))


def test_head_rules():
    with pytest.raises(ConfigError, match=exact(
            "confidence_head_with_markov requires markov_rank > 0 (the confidence head reads "
            "the Markov embedding W1[x_{k-1}])")):
        DSparkConfig.from_dict(_base(markov_rank=0, markov_head_type=None))
    # confidence_head_with_markov is ignored without a confidence head
    cfg = DSparkConfig.from_dict(_base(markov_rank=0, enable_confidence_head=False))
    assert not cfg.confidence_uses_markov
    with pytest.raises(ConfigError, match=exact(
            "markov_topk requires a Markov head (markov_rank > 0): it limits the Markov "
            "correction to the top-k base logits")):
        DSparkConfig.from_dict(_base(markov_rank=0, enable_confidence_head=False,
                                     markov_topk=4))
    assert DSparkConfig.from_dict(_base(markov_rank=0, enable_confidence_head=False,
                                        markov_topk=0)).draft_topk is None


def test_post_init_defaults():
    d = _base()
    del d["head_dim"], d["markov_head_type"]
    cfg = DSparkConfig.from_dict(d)
    assert cfg.head_dim == 4 and cfg.markov_head_type == "vanilla"
    assert "head_dim" not in cfg.to_dict()  # absent from the source: not written
    cfg2 = DSparkConfig(**{k: v for k, v in _for_target().__dict__.items()
                           if not k.startswith("_") and k != "extra"})
    assert cfg2.target_layer_ids == [0, 3]
    cfg3 = DSparkConfig.from_dict(_base(target_layer_ids=[0.0, 3]))
    assert cfg3.target_layer_ids == [0, 3] and all(type(i) is int for i in cfg3.target_layer_ids)
    with pytest.raises(ConfigError, match=exact("num_attention_heads must be a positive integer, "
                                                "got 0")):
        DSparkConfig.from_dict(_base(num_attention_heads=0, head_dim=None))


@pytest.mark.parametrize("field, value, msg", [
    ("vocab_size", True, "vocab_size has an invalid value True"),
    ("vocab_size", 2.5, "vocab_size has an invalid value 2.5"),
    ("vocab_size", "fifty", "vocab_size has an invalid value 'fifty'"),
    ("attention_bias", "yes", "attention_bias has an invalid value 'yes'"),
    ("rms_norm_eps", "small", "rms_norm_eps has an invalid value 'small'"),
    ("target_layer_ids", [0.5], "target_layer_ids has an invalid value [0.5]"),
    ("target_layer_ids", 3, "target_layer_ids has an invalid value 3"),
])
def test_coercion_errors(field, value, msg):
    with pytest.raises(ConfigError, match=exact(msg)):
        DSparkConfig.from_dict(_base(**{field: value}))


def test_coercion_values():
    cfg = DSparkConfig.from_dict(_base(vocab_size=50.0, attention_bias=1, rms_norm_eps="1e-4",
                                       markov_head_type="GATED", hidden_act="SiLU"))
    assert cfg.vocab_size == 50 and type(cfg.vocab_size) is int
    assert cfg.attention_bias is True and cfg.rms_norm_eps == 1e-4
    assert cfg.markov_head_type == "gated" and cfg.hidden_act == "silu"


def test_from_dict_reading_rules():
    d = _base(extra_key={"nested": [1]})
    del d["num_key_value_heads"]
    cfg = DSparkConfig.from_dict(d)
    assert cfg.num_key_value_heads == cfg.num_attention_heads == 4
    d["extra_key"]["nested"].append(2)  # extra is a deep copy
    assert cfg.extra["extra_key"] == {"nested": [1]}
    assert DSparkConfig.from_dict(_base(head_dim=None)).head_dim == 4  # None: not given
    missing = _base()
    for k in ("vocab_size", "block_size", "mask_token_id"):
        del missing[k]
    with pytest.raises(ConfigError, match=exact(
            "config is missing required field(s) ['vocab_size', 'block_size', "
            "'mask_token_id']")):
        DSparkConfig.from_dict(missing)
    with pytest.raises(ConfigError, match=exact("config has a text_config: only Qwen3-style "
                                                "drafter configs are supported")):
        DSparkConfig.from_dict(_base(text_config={"vocab_size": 3}))
    assert DSparkConfig.from_dict(_base(text_config=None)).extra["text_config"] is None


def test_json_file_exact_text(tmp_path):
    cfg = _for_target()
    path = tmp_path / "config.json"
    cfg.to_json_file(path)
    text = path.read_text(encoding="utf-8")
    assert text == json.dumps(cfg.to_dict(), indent=2, sort_keys=True) + "\n"
    assert DSparkConfig.from_json_file(path).to_dict() == cfg.to_dict()
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(ConfigError, match=re.escape(f"{bad}: not valid JSON (") + ".*\\)$"):
        DSparkConfig.from_json_file(bad)


def test_derived_values():
    cfg = _for_target()
    assert cfg.feature_size == 2 * 16
    assert cfg.has_markov_head and cfg.confidence_uses_markov
    assert cfg.draft_topk is None
    cfg.markov_topk = 7
    assert cfg.draft_topk == 7


def test_rope_type_case_and_linear_default_factor():
    d = _base(rope_scaling={"rope_type": "LINEAR", "factor": 2.0})
    cfg = DSparkConfig.from_dict(d)
    assert (cfg.rope_type, cfg.rope_factor) == ("linear", 2.0)
    cfg = DSparkConfig.from_dict(_base(rope_scaling={"rope_type": "linear"}))
    assert (cfg.rope_type, cfg.rope_factor) == ("linear", 1.0)


def test_round_trip_keeps_what_the_source_had():
    # optional keys present in a DFlash config are written back although unused
    d = _base(markov_rank=0, markov_head_type="vanilla", enable_confidence_head=False,
              confidence_head_with_markov=False, markov_topk=None)
    cfg = DSparkConfig.from_dict(d)
    assert cfg.to_dict() == d
    no_head = _base(markov_rank=0, confidence_head_with_markov=False,
                    enable_confidence_head=False)
    del no_head["markov_head_type"]
    assert DSparkConfig.from_dict(no_head).markov_head_type is None
    both = dict(_base(), dspark_draft_topk=7, markov_topk=4)
    assert DSparkConfig.from_dict(both).to_dict() == both
    # keys named like the class's internals are the source's own, kept in extra
    odd = _base(extra={"a": 1}, _present=[1], _rope_source="x")
    cfg = DSparkConfig.from_dict(odd)
    assert cfg.extra == {"model_type": "qwen3", "layer_types": ["full_attention"] * 2,
                         "extra": {"a": 1}, "_present": [1], "_rope_source": "x"}
    assert cfg.to_dict() == odd


def test_copies_are_deep():
    d = _base(rope_parameters={"rope_type": "default", "rope_theta": 1.0}, nested={"l": [1]})
    d.pop("rope_scaling"), d.pop("rope_theta")
    cfg = DSparkConfig.from_dict(d)
    d["rope_parameters"]["added"] = 1  # the caller's dict changes afterwards
    assert "added" not in cfg.to_dict()["rope_parameters"]
    out = cfg.to_dict()
    out["target_layer_ids"].append(4)
    out["nested"]["l"].append(2)
    assert cfg.target_layer_ids == [0, 3] and cfg.extra["nested"] == {"l": [1]}


def test_built_in_code_writes_head_dim_and_architectures():
    cfg = DSparkConfig(vocab_size=50, hidden_size=16, intermediate_size=32,
                       num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                       num_target_layers=6, target_layer_ids=[0, 3], block_size=5,
                       mask_token_id=49, markov_rank=1)
    d = cfg.to_dict()
    assert d["head_dim"] == 4 and d["architectures"] == ["Qwen3DSparkModel"]
    assert cfg.markov_head_type == "vanilla"  # rank 1 gets the default head


@pytest.mark.parametrize("value", [True, "x", 1.5])
def test_positive_integer_fields_built_in_code(value):
    with pytest.raises(ConfigError, match=exact(f"vocab_size must be a positive integer, got "
                                                f"{value!r}")):
        DSparkConfig(vocab_size=value, hidden_size=16, intermediate_size=32,
                     num_attention_heads=4, num_key_value_heads=2, num_hidden_layers=2,
                     num_target_layers=6, target_layer_ids=[0, 3], block_size=5,
                     mask_token_id=0)


def test_rope_theta_and_head_type_boundaries():
    DSparkConfig.from_dict(_base(rope_theta=0.5))
    with pytest.raises(ConfigError, match=exact("rope_theta must be a positive number, got "
                                                "0.0")):
        DSparkConfig.from_dict(_base(rope_theta=0.0))
    with pytest.raises(ConfigError, match=exact("markov_head_type must be one of ('vanilla', "
                                                "'gated', 'rnn'), got 'lstm'")):
        DSparkConfig.from_dict(_base(markov_rank=1, markov_head_type="lstm"))
