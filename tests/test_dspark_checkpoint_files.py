"""DSpark checkpoint files as bytes and messages (issue 21, mutation testing of
drafters/dspark/checkpoint.py): the exact config.json text and safetensors metadata written,
the dtype names, sharded indexes, the mismatch report's exact text, the dtype a checkpoint
loads in, the ignored-buffer log, tied embeddings, and the frozen target weights."""
import json
import logging
import os
import re
import sys

import pytest
import torch

from dspark_ext.drafters.dspark import CheckpointError, DSparkDrafter
from dspark_ext.drafters.dspark.checkpoint import (_checkpoint_dtype, check_state_dict,
                                                   read_safetensors)

from dspark_cases import make_model
from test_dspark_checkpoint import _deepspec_config, _deepspec_tensors, _write

st = pytest.importorskip("safetensors.torch")
from safetensors import safe_open  # noqa: E402


def test_config_text_and_metadata(tmp_path):
    model = make_model("vanilla")
    model.save_pretrained(tmp_path)
    want = dict(model.config.to_dict(), dtype="float32")
    text = (tmp_path / "config.json").read_text(encoding="utf-8")
    assert text == json.dumps(want, indent=2, sort_keys=True) + "\n"
    with safe_open(str(tmp_path / "model.safetensors"), framework="pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_dtype_names_and_the_transformers4_key(tmp_path):
    model = make_model("vanilla").to(torch.float64)  # not in the name table: torch's own name
    model.config.extra["torch_dtype"] = "bfloat16"   # a transformers-4 config
    model.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["dtype"] == "float64" and cfg["torch_dtype"] == "float64"
    make_model("vanilla").to(torch.float16).save_pretrained(tmp_path / "h")
    assert json.loads((tmp_path / "h" / "config.json").read_text())["dtype"] == "float16"
    assert "torch_dtype" not in json.loads((tmp_path / "h" / "config.json").read_text())


def test_sharded_index_without_a_weight_map(tmp_path):
    cfg = _deepspec_config()
    with open(tmp_path / "config.json", "w") as f:
        json.dump(cfg, f)
    (tmp_path / "model.safetensors.index.json").write_text("{}", encoding="utf-8")
    assert read_safetensors(str(tmp_path)) == {}
    with pytest.raises(CheckpointError, match="missing tensors: embed_tokens.weight"):
        DSparkDrafter.from_pretrained(tmp_path)


def test_no_weights_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="^" + re.escape(
            f"{tmp_path}: no model.safetensors or model.safetensors.index.json (DSpark "
            "checkpoints are safetensors files written by save_pretrained)") + "$"):
        read_safetensors(str(tmp_path))


def test_missing_safetensors_package(monkeypatch):
    from dspark_ext.drafters.dspark import checkpoint
    monkeypatch.setitem(sys.modules, "safetensors.torch", None)
    with pytest.raises(ImportError, match="^" + re.escape(
            "reading or writing DSpark checkpoints needs the 'safetensors' package "
            "(pip install safetensors)") + "$"):
        checkpoint._safetensors()


def test_mismatch_report_exact_text():
    expected = {"a.weight": torch.Size([2, 3]), "b.weight": torch.Size([4]),
                "c.weight": torch.Size([1]), "d.weight": torch.Size([2])}
    tensors = {"c.weight": torch.zeros(2), "d.weight": torch.zeros(2, dtype=torch.int64),
               "x.bias": torch.zeros(5), "y.bias": torch.zeros(1, 2)}
    with pytest.raises(CheckpointError) as info:
        check_state_dict(expected, tensors, "/ckpt")
    assert str(info.value) == (
        "/ckpt: checkpoint does not match its config:\n"
        "  missing tensors: a.weight (expected shape [2, 3]), b.weight (expected shape [4])\n"
        "  unexpected tensors (not in a drafter with this config): x.bias [5], y.bias [1, 2]\n"
        "  c.weight: expected shape [1], got [2]\n"
        "  d.weight: expected a floating-point tensor, got torch.int64")
    # an integer tensor the config does not know is reported once, as unexpected
    with pytest.raises(CheckpointError) as info:
        check_state_dict({}, {"steps": torch.zeros(1, dtype=torch.int64)}, "p")
    assert str(info.value) == ("p: checkpoint does not match its config:\n"
                               "  unexpected tensors (not in a drafter with this config): "
                               "steps [1]")
    check_state_dict({"a": torch.Size([1])}, {"a": torch.zeros(1)}, "p")  # a match: silent


def test_checkpoint_dtype_counts_elements():
    two_small_bf16 = {"a": torch.zeros(10, dtype=torch.bfloat16),
                      "b": torch.zeros(10, dtype=torch.bfloat16),
                      "c": torch.zeros(15), "i": torch.zeros(100, dtype=torch.int64)}
    assert _checkpoint_dtype(two_small_bf16) == torch.bfloat16  # 20 elements against 15
    assert _checkpoint_dtype({"i": torch.zeros(3, dtype=torch.int64)}) == torch.float32


def test_ignored_buffer_is_logged_only_when_present(tmp_path, caplog):
    cfg, tensors = _deepspec_config(), _deepspec_tensors(_deepspec_config())
    _write(tmp_path / "plain", cfg, tensors)
    with caplog.at_level(logging.INFO, logger="dspark_ext.drafters.dspark.checkpoint"):
        DSparkDrafter.from_pretrained(tmp_path / "plain")
    assert not caplog.records
    _write(tmp_path / "buf", cfg, dict(tensors, **{"rotary_emb.inv_freq": torch.ones(8)}))
    with caplog.at_level(logging.INFO, logger="dspark_ext.drafters.dspark.checkpoint"):
        DSparkDrafter.from_pretrained(tmp_path / "buf")
    assert [r.getMessage() for r in caplog.records] == [
        f"{tmp_path / 'buf'}: ignoring rotary_emb.inv_freq (recomputed from the config)"]


def test_tied_embeddings(tmp_path):
    cfg, tensors = _deepspec_config(), _deepspec_tensors(_deepspec_config())
    untied = dict(tensors)
    del untied["lm_head.weight"]
    _write(tmp_path / "untied", cfg, untied)
    with pytest.raises(CheckpointError, match=re.escape(str(tmp_path / "untied")) +
                       ": checkpoint does not match its config:\n  missing tensors: "
                       "lm_head.weight"):
        DSparkDrafter.from_pretrained(tmp_path / "untied")
    _write(tmp_path / "tied", dict(cfg, tie_word_embeddings=True), untied)
    model = DSparkDrafter.from_pretrained(tmp_path / "tied")
    assert torch.equal(model.lm_head.weight, tensors["embed_tokens.weight"])
    _write(tmp_path / "both", dict(cfg, tie_word_embeddings=True), tensors)
    model = DSparkDrafter.from_pretrained(tmp_path / "both")  # a head in the file is kept
    assert torch.equal(model.lm_head.weight, tensors["lm_head.weight"])
    assert not torch.equal(model.lm_head.weight, model.embed_tokens.weight)


def test_target_weights_are_frozen(tmp_path):
    make_model("vanilla_conf_markov").save_pretrained(tmp_path)
    model = DSparkDrafter.from_pretrained(tmp_path)
    assert not model.embed_tokens.weight.requires_grad
    assert not model.lm_head.weight.requires_grad
    assert model.fc.weight.requires_grad and model.markov_head.markov_w2.weight.requires_grad
    assert os.path.isfile(tmp_path / "model.safetensors")
