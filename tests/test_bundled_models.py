"""The bundled default models: they load through the public API with no paths, their
checkpoints pass the format checks, greedy speculative decoding with them equals the target's
own greedy decoding on held-out prompts, and the demo runs end to end (smoke mode)."""
import json
import math
import os

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("safetensors")

import dspark_ext  # noqa: E402
from dspark_ext import bundled  # noqa: E402
from dspark_ext.bundled import corpus as corpus_mod  # noqa: E402
from dspark_ext.drafters.dspark import DSparkConfig, DSparkDrafter  # noqa: E402
from dspark_ext.drafters.dspark.checkpoint import read_safetensors  # noqa: E402

MB = 1e6


@pytest.fixture(scope="module")
def pair():
    return dspark_ext.default_pair()


def test_bundled_files_and_budget():
    manifest = json.load(open(os.path.join(bundled.models_dir(), "manifest.json")))
    on_disk = {name: os.path.getsize(os.path.join(bundled.model_path(name), "model.safetensors"))
               for name in ("target", "dspark", "dflash", "ar_draft")}
    assert manifest["weights_bytes"] == on_disk
    assert sum(on_disk.values()) <= 40 * MB


@pytest.mark.parametrize("name", ["dspark", "dflash"])
def test_drafter_checkpoints_pass_the_format_checks(name):
    path = bundled.model_path(name)
    cfg = DSparkConfig.from_dict(json.load(open(os.path.join(path, "config.json"))))
    raw = json.load(open(os.path.join(path, "config.json")))
    assert raw["architectures"] == ["Qwen3DSparkModel"]
    assert cfg.block_size == 7 and cfg.mask_token_id == 1
    tensors = read_safetensors(path)
    assert all(t.dtype == torch.bfloat16 for t in tensors.values())
    expected = {k for k in DSparkDrafter(cfg).state_dict() if "rotary" not in k}
    assert set(tensors) == expected
    has_heads = name == "dspark"
    assert any(k.startswith("markov_head.") for k in tensors) == has_heads
    assert any(k.startswith("confidence_head.") for k in tensors) == has_heads
    target = bundled.load_target()
    # The drafter's embedding and LM head are the target's, frozen (design §7).
    emb = target.get_input_embeddings().weight.to(torch.bfloat16)
    assert torch.equal(tensors["embed_tokens.weight"], emb)
    assert cfg.num_target_layers == target.config.num_hidden_layers


def test_tokenizer_and_target():
    from transformers import PreTrainedTokenizerFast, Qwen3ForCausalLM
    path = bundled.model_path("target")
    tok = PreTrainedTokenizerFast.from_pretrained(path)
    model = Qwen3ForCausalLM.from_pretrained(path)
    assert len(tok) == model.config.vocab_size
    assert tok.eos_token_id == model.config.eos_token_id == 0
    code = "def add(a, b):\n    return a + b\n"
    assert tok.decode(tok.encode(code)) == code
    info = json.load(open(os.path.join(path, "training.json")))
    assert math.isfinite(info["heldout_loss"]) and info["heldout_loss"] < 3.5  # measured 3.24


def test_sts_temperatures_are_saved_with_the_drafter():
    for t in (0.0, 1.0):
        temps = bundled.sts_temperatures("dspark", t)
        assert len(temps) == 7 and all(0 < x < 100 for x in temps)
    assert bundled.sts_temperatures("dflash") is None


def test_heldout_prompts_come_from_heldout_modules_only():
    prompts = bundled.heldout_prompts()
    held = corpus_mod.heldout_modules()
    assert len(prompts) >= 40
    for p in prompts:
        assert any(p["module"] == h or (h.endswith("/") and p["module"].startswith(h))
                   for h in held)
    assert not set(corpus_mod.collect().train) & {p["module"] for p in prompts}


def test_bad_names():
    with pytest.raises(ValueError, match="drafter must be one of"):
        dspark_ext.default_pair("eagle")
    with pytest.raises(ValueError, match="name must be one of"):
        bundled.model_path("nope")


@pytest.mark.parametrize("drafter", ["dspark", "dflash", "ar_draft"])
def test_greedy_speculative_equals_target_greedy(drafter):
    pair = dspark_ext.default_pair(drafter)
    prompts = [p["input_ids"] for p in bundled.heldout_prompts()[::11][:4]]
    out = pair.decoder().generate(prompts, max_new_tokens=40, verify="greedy")
    for prompt, new in zip(prompts, out.new_tokens):
        ref = pair.target.generate(torch.tensor([prompt]), max_new_tokens=40, do_sample=False,
                                   eos_token_id=None, pad_token_id=0)
        assert new == ref[0, len(prompt):].tolist()
    # A trained drafter, not noise (an untrained one gives ~1.0 token per round).
    assert out.stats.accepted_length() > 1.4


def test_complete_returns_text(pair):
    text = pair.complete(["def read_lines(path):\n"], max_new_tokens=24)[0]
    assert isinstance(text, str) and text


def test_demo_smoke(tmp_path):
    from dspark_ext.bundled.demo import run_demo
    res = run_demo(num_prompts=1, max_new_tokens=16, out_dir=str(tmp_path), show=0)
    assert res["runs"]["T=0"]["greedy_identical"] is True
    for run in res["runs"].values():
        assert run["speculative"]["tokens"] > 0 and run["speedup"] > 0
    saved = json.load(open(tmp_path / "demo.json"))
    assert set(saved["runs"]) == {"T=0", "T=1"}
