"""DSparkDrafter checkpoints: save/load round trips, DeepSpec's layout written by hand, and
errors that name the tensor or config field."""
import json
import os

import pytest
import torch

from dspark_ext.drafters.dspark import (CheckpointError, ConfigError, DSparkConfig,
                                        DSparkDrafter)

from dspark_cases import BLOCK, FEATURES, HIDDEN, VOCAB, History, make_config, make_model, \
    row_args

st = pytest.importorskip("safetensors.torch")


def _draft(model, seed=0):
    hist = History(2, seed=seed)
    model.reset(2, "cpu")
    model.update(hist.update([4, 2]))
    t, s, o = row_args(2, 0.7)
    return model.draft(torch.tensor([3, 8]), hist.lengths, BLOCK, t, s, o)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_round_trip(tmp_path, dtype):
    model = make_model("rnn_conf_markov").to(dtype)
    model.save_pretrained(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["config.json", "model.safetensors"]
    loaded = DSparkDrafter.from_pretrained(tmp_path)
    assert loaded.dtype == dtype  # default: the checkpoint's dtype
    for (n, a), (m, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert n == m and torch.equal(a, b), n
    saved = loaded.config.to_dict()
    assert saved.pop("dtype") == str(dtype).replace("torch.", "")
    assert saved == model.config.to_dict()
    first, second = _draft(model), _draft(loaded)
    for name in ("draft_tokens", "draft_logits", "base_logits", "confidence_logits", "hidden"):
        assert torch.equal(getattr(first, name), getattr(second, name)), name
    assert not loaded.embed_tokens.weight.requires_grad  # the target's: frozen
    assert loaded.fc.weight.requires_grad


def test_dtype_and_device_arguments(tmp_path):
    make_model("vanilla").to(torch.bfloat16).save_pretrained(tmp_path)
    as_fp32 = DSparkDrafter.from_pretrained(tmp_path, dtype=torch.float32, device="cpu")
    assert as_fp32.dtype == torch.float32 and as_fp32.device.type == "cpu"
    with open(tmp_path / "config.json") as f:
        assert json.load(f)["dtype"] == "bfloat16"
    _draft(as_fp32)


def _deepspec_config():
    """A config.json as DeepSpec's save_pretrained writes it for a Qwen3 target."""
    return {
        "architectures": ["Qwen3DSparkModel"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 151643, "dtype": "bfloat16", "eos_token_id": 151645, "head_dim": 16,
        "hidden_act": "silu", "hidden_size": HIDDEN, "initializer_range": 0.02,
        "intermediate_size": 64, "layer_types": ["full_attention"] * 2,
        "max_position_embeddings": 40960, "max_window_layers": 36, "model_type": "qwen3",
        "num_attention_heads": 4, "num_hidden_layers": 2, "num_key_value_heads": 2,
        "rms_norm_eps": 1e-06, "rope_parameters": {"rope_theta": 1000000, "rope_type": "default"},
        "sliding_window": None, "tie_word_embeddings": False, "transformers_version": "5.0.0",
        "use_cache": True, "use_sliding_window": False, "vocab_size": VOCAB,
        "block_size": BLOCK, "target_layer_ids": [-1, 1], "num_target_layers": 4,
        "mask_token_id": VOCAB - 1, "num_anchors": 512, "markov_rank": 8,
        "markov_head_type": "gated", "enable_confidence_head": True,
        "confidence_head_with_markov": True,
    }


def _deepspec_tensors(config):
    gen = torch.Generator().manual_seed(3)
    d, r, v = HIDDEN, config["markov_rank"], VOCAB
    q, kv = 4 * 16, 2 * 16
    shapes = {"embed_tokens.weight": (v, d), "lm_head.weight": (v, d), "norm.weight": (d,),
              "fc.weight": (d, FEATURES), "hidden_norm.weight": (d,),
              "markov_head.markov_w1.weight": (v, r), "markov_head.markov_w2.weight": (v, r),
              "markov_head.gate_proj.weight": (r, d + r), "markov_head.gate_proj.bias": (r,),
              "confidence_head.proj.weight": (1, d + r), "confidence_head.proj.bias": (1,)}
    for i in range(config["num_hidden_layers"]):
        p = f"layers.{i}."
        a = p + "self_attn."
        shapes.update({p + "input_layernorm.weight": (d,),
                       p + "post_attention_layernorm.weight": (d,),
                       a + "q_proj.weight": (q, d), a + "k_proj.weight": (kv, d),
                       a + "v_proj.weight": (kv, d), a + "o_proj.weight": (d, q),
                       a + "q_norm.weight": (16,), a + "k_norm.weight": (16,),
                       p + "mlp.gate_proj.weight": (64, d), p + "mlp.up_proj.weight": (64, d),
                       p + "mlp.down_proj.weight": (d, 64)})
    return {n: (0.3 * torch.randn(s, generator=gen)).to(torch.bfloat16) for n, s in shapes.items()}


def _write(path, config, tensors):
    os.makedirs(path, exist_ok=True)
    with open(os.path.join(path, "config.json"), "w") as f:
        json.dump(config, f)
    st.save_file(tensors, os.path.join(path, "model.safetensors"), metadata={"format": "pt"})


def test_deepspec_layout_written_by_hand_loads_and_drafts(tmp_path):
    config, tensors = _deepspec_config(), _deepspec_tensors(_deepspec_config())
    tensors["rotary_emb.inv_freq"] = torch.ones(8)  # some writers include it: ignored
    _write(tmp_path, config, tensors)
    model = DSparkDrafter.from_pretrained(tmp_path)
    assert model.dtype == torch.bfloat16
    assert model.config.markov_head_type == "gated" and model.config.rope_theta == 1e6
    assert model.config.to_dict() == config  # every field round-trips, unknown ones included
    assert torch.equal(model.markov_head.gate_proj.weight, tensors["markov_head.gate_proj.weight"])
    out = _draft(model)
    assert out.draft_tokens.shape == (2, BLOCK) and out.confidence_logits.shape == (2, BLOCK)
    assert ((out.draft_tokens >= 0) & (out.draft_tokens < VOCAB)).all()


def test_sharded_checkpoint_and_tied_head_load(tmp_path):
    config, tensors = _deepspec_config(), _deepspec_tensors(_deepspec_config())
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2],
              "model-00002-of-00002.safetensors": names[1::2]}
    for shard, part in shards.items():
        st.save_file({n: tensors[n] for n in part}, str(tmp_path / shard))
    with open(tmp_path / "model.safetensors.index.json", "w") as f:
        json.dump({"weight_map": {n: s for s, part in shards.items() for n in part}}, f)
    with open(tmp_path / "config.json", "w") as f:
        json.dump(config, f)
    model = DSparkDrafter.from_pretrained(tmp_path)
    for n, t in tensors.items():
        assert torch.equal(model.state_dict()[n], t), n
    tied = tmp_path / "tied"
    config["tie_word_embeddings"] = True
    del tensors["lm_head.weight"]
    _write(tied, config, tensors)
    model = DSparkDrafter.from_pretrained(tied)
    assert torch.equal(model.lm_head.weight, tensors["embed_tokens.weight"])


def test_legacy_rope_spelling_round_trips():
    config = _deepspec_config()
    del config["rope_parameters"]
    config.update(rope_theta=5000.0, rope_scaling={"rope_type": "linear", "factor": 2.0})
    cfg = DSparkConfig.from_dict(config)
    assert (cfg.rope_type, cfg.rope_theta, cfg.rope_factor) == ("linear", 5000.0, 2.0)
    assert cfg.to_dict() == config


def test_dflash_config_without_optional_fields_round_trips():
    config = _deepspec_config()
    config.update(markov_rank=0, enable_confidence_head=False)
    del config["markov_head_type"], config["confidence_head_with_markov"]
    cfg = DSparkConfig.from_dict(config)
    assert not cfg.has_markov_head and not cfg.enable_confidence_head
    assert cfg.to_dict() == config
    built = make_config("dflash").to_dict()  # built in code: written as DeepSpec writes it
    assert "markov_head_type" not in built and "confidence_head_with_markov" not in built
    assert DSparkConfig.from_dict(built).to_dict() == built


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.update({"fc.weight": torch.zeros(HIDDEN, FEATURES + 1)}),
     r"fc.weight: expected shape \[32, 64\], got \[32, 65\]"),
    (lambda t: t.pop("layers.1.mlp.up_proj.weight"),
     r"missing tensors: layers.1.mlp.up_proj.weight \(expected shape \[64, 32\]\)"),
    (lambda t: t.update({"model.norm.weight": torch.ones(HIDDEN)}),
     r"unexpected tensors .*model.norm.weight \[32\]"),
    (lambda t: t.update({"markov_head.joint_proj.bias": torch.ones(24)}),
     r"unexpected tensors .*markov_head.joint_proj.bias"),
])
def test_tensor_errors_name_the_tensor(tmp_path, edit, match):
    config = _deepspec_config()
    tensors = _deepspec_tensors(config)
    edit(tensors)
    _write(tmp_path, config, tensors)
    with pytest.raises(CheckpointError, match=match):
        DSparkDrafter.from_pretrained(tmp_path)


@pytest.mark.parametrize("field, value, match", [
    ("target_layer_ids", [-1, 3], "final target layer 3"),
    ("target_layer_ids", [1, 1], "strictly increasing"),
    ("target_layer_ids", [-2, 1], r"target_layer_ids entries must lie in \{-1\} U \[0, 2\]"),
    ("target_layer_ids", [], "target_layer_ids must not be empty"),
    ("block_size", 0, "block_size must be a positive integer"),
    ("markov_rank", 513, r"markov_rank must lie in \[0, 512\]"),
    ("markov_rank", -1, r"markov_rank must lie in \[0, 512\]"),
    ("markov_head_type", "lstm", "markov_head_type must be one of"),
    ("rope_parameters", {"rope_type": "yarn", "rope_theta": 1e6}, "rope type 'yarn'"),
    ("num_key_value_heads", 3, "must be a multiple of num_key_value_heads"),
    ("mask_token_id", VOCAB, "mask_token_id must lie in"),
    ("hidden_size", "big", "hidden_size has an invalid value"),
    ("vocab_size", None, r"missing required field\(s\) \['vocab_size'\]"),
])
def test_config_errors_name_the_field(tmp_path, field, value, match):
    config = _deepspec_config()
    config[field] = value
    _write(tmp_path, config, _deepspec_tensors(_deepspec_config()))
    with pytest.raises(ConfigError, match=match):
        DSparkDrafter.from_pretrained(tmp_path)


def test_confidence_with_markov_needs_a_markov_head():
    with pytest.raises(ConfigError, match="confidence_head_with_markov requires markov_rank > 0"):
        make_config("dflash_conf", confidence_head_with_markov=True)


def test_missing_files_are_reported(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        DSparkDrafter.from_pretrained(tmp_path)
    with open(tmp_path / "config.json", "w") as f:
        json.dump(_deepspec_config(), f)
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        DSparkDrafter.from_pretrained(tmp_path)


def test_for_target_copies_the_qwen3_fields():
    transformers = pytest.importorskip("transformers")
    target = transformers.Qwen3Config(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64,
                                      num_hidden_layers=4, num_attention_heads=4,
                                      num_key_value_heads=2, head_dim=16, rms_norm_eps=1e-5)
    cfg = DSparkConfig.for_target(target, block_size=BLOCK, num_hidden_layers=2,
                                  target_layer_ids=[-1, 1], mask_token_id=VOCAB - 1,
                                  markov_rank=8, markov_head_type="rnn")
    assert (cfg.num_target_layers, cfg.num_hidden_layers, cfg.rms_norm_eps) == (4, 2, 1e-5)
    assert cfg.feature_size == FEATURES and cfg.enable_confidence_head
    assert cfg.to_dict()["model_type"] == "qwen3"
    dflash = DSparkConfig.for_target(target.to_dict(), block_size=BLOCK, num_hidden_layers=1,
                                     target_layer_ids=[0, 2], mask_token_id=0, markov_rank=0,
                                     enable_confidence_head=False)
    assert "markov_head_type" not in dflash.to_dict()
    assert "confidence_head_with_markov" not in dflash.to_dict()
    model = DSparkDrafter(cfg)
    embed, head = torch.randn(VOCAB, HIDDEN), torch.randn(VOCAB, HIDDEN)
    model.init_from_target(embed, head)
    assert torch.equal(model.embed_tokens.weight, embed) and not model.lm_head.weight.requires_grad
    with pytest.raises(ValueError, match="embed_weight must be"):
        model.init_from_target(embed[:, :-1], head)
