"""The bundled default's build pipeline on a tiny fake standard library: corpus selection and
hold-out, the tokenizer, the LM trainer's data order and exact resume, the drafter data and
the held-out prompts."""
import json
import os

import pytest
import torch

pytest.importorskip("transformers")
pytest.importorskip("tokenizers")

from dspark_ext.bundled import corpus as corpus_mod  # noqa: E402
from dspark_ext.bundled import lm as lm_mod  # noqa: E402
from dspark_ext.bundled.data import heldout_prompts, write_drafter_data  # noqa: E402
from dspark_ext.bundled.lm import ARCHS, batch_at, token_stream, train_lm  # noqa: E402
from dspark_ext.bundled.tokenizer import MASK, load_tokenizer, train_tokenizer  # noqa: E402

SOURCE = '''"""Module {i}."""
import os


class Thing{i}:
    """A thing."""

    def __init__(self, value):
        self.value = value

    def double(self):
        return self.value * 2


def helper_{i}(items, key=None):
    """Sort ``items`` by ``key``."""
    out = []
    for item in sorted(items, key=key):
        out.append(item)
    return out


def other_{i}(path):
    return os.path.join(path, "x{i}")
'''


@pytest.fixture(scope="module")
def fake_stdlib(tmp_path_factory):
    root = tmp_path_factory.mktemp("stdlib")
    for i, rel in enumerate(["a.py", "b.py", "pkg/__init__.py", "pkg/mod.py", "held.py",
                             "heldpkg/__init__.py", "test/test_a.py", "encodings/cp1.py",
                             "site-packages/x.py", "notes.txt"]):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(SOURCE.format(i=i) * 3)
    return str(root)


@pytest.fixture(scope="module")
def fake_corpus(fake_stdlib):
    return corpus_mod.collect(fake_stdlib, ["held.py", "heldpkg/"])


@pytest.fixture(scope="module")
def tok(fake_corpus, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("tok"))
    train_tokenizer((fake_corpus.read(r) for r in fake_corpus.train), 600, out)
    return load_tokenizer(out)


def test_corpus_holds_out_whole_modules_and_skips_tests(fake_corpus):
    assert fake_corpus.train == ["a.py", "b.py", "pkg/__init__.py", "pkg/mod.py"]
    assert fake_corpus.heldout == ["held.py", "heldpkg/__init__.py"]
    fp = fake_corpus.fingerprint()
    assert fp["train_files"] == 4 and len(fp["sha256"]) == 64


def test_corpus_missing_heldout_module_is_an_error(fake_stdlib):
    with pytest.raises(FileNotFoundError, match="nothere.py"):
        corpus_mod.collect(fake_stdlib, ["nothere.py"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        corpus_mod.collect(fake_stdlib + "/missing", [])


def test_bundled_heldout_list_exists_in_this_python():
    c = corpus_mod.collect()
    held = set(c.heldout)
    assert held and not held & set(c.train)
    for module in corpus_mod.heldout_modules():
        assert any(h == module or h.startswith(module) for h in held)


def test_tokenizer_round_trips_and_reserves_special_tokens(tok, fake_corpus):
    text = fake_corpus.read("held.py")  # never seen in training
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text
    assert tok.eos_token_id == 0 and tok.convert_tokens_to_ids(MASK) == 1
    assert 1 not in tok.encode(text + " <mask> ", add_special_tokens=False)
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["x"], 100, "/tmp/unused")


def test_batches_are_a_function_of_the_step(tok, fake_corpus):
    stream = token_stream((fake_corpus.read(r) for r in fake_corpus.train), tok)
    x1, y1 = batch_at(stream, 5, 3, 16, seed=0)
    x2, y2 = batch_at(stream, 5, 3, 16, seed=0)
    x3, _ = batch_at(stream, 6, 3, 16, seed=0)
    assert torch.equal(x1, x2) and torch.equal(y1, y2) and not torch.equal(x1, x3)
    assert torch.equal(x1[:, 1:], y1[:, :-1])
    with pytest.raises(ValueError, match="shorter"):
        batch_at(stream[:10], 0, 1, 16, 0)


def test_lm_training_resumes_exactly(tok, fake_corpus, tmp_path, monkeypatch):
    monkeypatch.setitem(ARCHS, "ar_draft", dict(hidden_size=32, intermediate_size=64,
                                                num_hidden_layers=1, num_attention_heads=1,
                                                num_key_value_heads=1, head_dim=32))
    tok_dir = str(tmp_path / "tok")
    tok.save_pretrained(tok_dir)
    kw = dict(batch=2, seq_len=16, warmup=2, save_every=2, eval_every=2, corpus=fake_corpus)
    straight = train_lm("ar_draft", tok_dir, str(tmp_path / "a"), 4, **kw)
    save = lm_mod._save_state

    def save_then_die(path, model, opt, step):  # the run is killed right after step 2's save
        save(path, model, opt, step)
        raise KeyboardInterrupt

    monkeypatch.setattr(lm_mod, "_save_state", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_lm("ar_draft", tok_dir, str(tmp_path / "b"), 4, **kw)
    monkeypatch.setattr(lm_mod, "_save_state", save)
    assert not (tmp_path / "b" / "final").exists()
    resumed = train_lm("ar_draft", tok_dir, str(tmp_path / "b"), 4, **kw)  # continues at 2
    from safetensors.torch import load_file
    a = load_file(os.path.join(straight, "model.safetensors"))
    b = load_file(os.path.join(resumed, "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    info = json.load(open(os.path.join(resumed, "training.json")))
    assert info["steps"] == 4 and info["corpus"]["train_files"] == 4
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(resumed)
    assert model.config.vocab_size == len(tok) and model.config.tie_word_embeddings


def test_drafter_windows_and_prompts(tok, fake_corpus, tmp_path):
    stream = torch.arange(100, dtype=torch.int32)
    path = str(tmp_path / "d.jsonl")
    assert write_drafter_data(stream, path, seq_len=30) == 3
    rows = [json.loads(line) for line in open(path)]
    assert rows[1]["input_ids"] == list(range(30, 60)) and rows[1]["loss_mask"] == [1] * 30
    prompts = heldout_prompts(fake_corpus, tok, per_file=2, max_prompt_tokens=64)
    assert prompts and {p["module"] for p in prompts} <= set(fake_corpus.heldout)
    for p in prompts:
        assert len(p["input_ids"]) <= 64
        assert p["text"].rstrip().split("\n")[-1].lstrip().startswith("def ")


def test_regenerated_data_is_the_targets_own_continuation(tok, fake_corpus, tmp_path):
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from dspark_ext.bundled.build import regenerate_data
    from dspark_ext.bundled.data import def_prompts
    work = tmp_path / "work"
    tok.save_pretrained(str(work / "tokenizer"))
    torch.manual_seed(0)
    cfg = Qwen3Config(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                      num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      head_dim=16, eos_token_id=0, pad_token_id=0)
    model = Qwen3ForCausalLM(cfg).eval()
    model.save_pretrained(str(work / "target" / "final"))
    kw = dict(per_file=2, prompt_tokens=24, new_tokens=6, batch_size=3, corpus=fake_corpus)
    regenerate_data(str(work), **kw)
    prompts = def_prompts(fake_corpus, fake_corpus.train, tok, 2, 24)
    rows = {t: [json.loads(line) for line in open(work / "data" / f"regen_T{t}.jsonl")]
            for t in (0, 1)}
    assert len(rows[0]) + len(rows[1]) == len(prompts) and rows[0] and rows[1]
    loaded = Qwen3ForCausalLM.from_pretrained(str(work / "target" / "final"),
                                              dtype=torch.bfloat16).eval()
    for i, row in enumerate(rows[0]):  # even prompts, greedy: the target's argmax chain
        p = prompts[2 * i]["input_ids"]
        assert row["input_ids"][:len(p)] == p
        assert row["loss_mask"] == [0] * len(p) + [1] * (len(row["input_ids"]) - len(p))
        ids = torch.tensor([row["input_ids"]])
        with torch.no_grad():
            logits = loaded(ids).logits[0, len(p) - 1:-1]
        new = row["input_ids"][len(p):]
        assert 1 <= len(new) <= 6 and (0 not in new[:-1])
        assert logits.argmax(-1).tolist() == new
    for i, row in enumerate(rows[1]):  # odd prompts, sampled
        assert row["input_ids"][:len(prompts[2 * i + 1]["input_ids"])] == \
            prompts[2 * i + 1]["input_ids"]
    stamp = os.path.getmtime(work / "data" / "regen_T0.jsonl")
    regenerate_data(str(work), **kw)  # present: skipped (the stage resumes)
    assert os.path.getmtime(work / "data" / "regen_T0.jsonl") == stamp
