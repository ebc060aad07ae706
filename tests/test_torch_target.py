"""The plain-torch target path (issue 21, mutation testing): the per-request KV cache, the
TorchTarget adapter around it and ``as_target``. Known values on hand-built keys and values,
and a tiny torch LM whose cached forwards must equal the full recompute."""
import pytest
import torch

from dspark_ext import TorchTarget
from dspark_ext.targets.adapt import as_target
from dspark_ext.targets.kv_cache import KVCache
from tiny_models import TinyTorchLM


def _kv(b, n, tag, h=2, d=3):
    """Keys/values [B, H, n, D] whose entries name (row, token, tag)."""
    base = (torch.arange(b)[:, None, None, None] * 100 + torch.arange(n)[None, None, :, None]
            + tag * 1000).float()
    return base.expand(b, h, n, d).clone(), (-base).expand(b, h, n, d).clone()


def test_kv_cache_block_positions_and_mask():
    c = KVCache(2, torch.device("cpu"))
    assert c.batch_size == 2 and c.length.tolist() == [0, 0] and c.length.dtype == torch.int64
    pos = c.begin(3)
    assert pos.tolist() == [[0, 1, 2], [0, 1, 2]]
    k, v = _kv(2, 3, 1)
    k_all, v_all, mask = c.update(0, k, v)
    assert k_all.shape == (2, 2, 3, 3) and mask.shape == (2, 1, 3, 3)
    assert mask[0, 0].tolist() == [[True, False, False], [True, True, False], [True] * 3]
    assert torch.equal(k_all, k) and torch.equal(v_all, v)
    c.commit(torch.tensor([3, 1]))  # row 1 keeps one of its three tokens
    assert c.length.tolist() == [3, 1]
    pos = c.begin(2)
    assert pos.tolist() == [[3, 4], [1, 2]]
    k2, v2 = _kv(2, 2, 2)
    k_all, v_all, mask = c.update(0, k2, v2)
    assert k_all.shape[2] == 5  # the longest row plus the block
    assert mask[0, 0].tolist() == [[True] * 4 + [False], [True] * 5]
    assert mask[1, 0].tolist() == [[True, True, False, False, False],
                                   [True, True, True, False, False]]
    assert torch.equal(k_all[0, :, :3], k[0]) and torch.equal(k_all[0, :, 3:], k2[0])
    assert torch.equal(k_all[1, :, :1], k[1, :, :1]) and torch.equal(k_all[1, :, 1:3], k2[1])
    assert torch.equal(v_all[1, :, 1:3], v2[1])
    # a second layer has its own buffers
    k3, v3 = _kv(2, 2, 3)
    k_all3, _, _ = c.update(1, k3, v3)
    assert torch.equal(k_all3[0, :, 3:], k3[0])
    assert torch.equal(c.update(0, k2, v2)[0], k_all)


def test_kv_cache_errors():
    c = KVCache(1, torch.device("cpu"))
    k, v = _kv(1, 2, 0)
    with pytest.raises(RuntimeError) as e:
        c.update(0, k, v)
    assert str(e.value) == "KVCache.update called outside a block (call begin first)"
    c.begin(3)
    with pytest.raises(ValueError, match="k/v carry 2 tokens, the block has 3"):
        c.update(0, k, v)
    k3, v3 = _kv(1, 3, 0)
    with pytest.raises(ValueError, match="k/v carry 3 tokens, the block has 3"):
        c.update(0, k3, v)
    c.update(0, k3, v3)
    c.commit(torch.tensor([3]))
    with pytest.raises(RuntimeError, match="outside a block"):
        c.update(0, k3, v3)  # commit ends the block


def test_kv_cache_grows_keeping_entries():
    c = KVCache(1, torch.device("cpu"))
    written = []
    for step in range(5):  # 5 blocks of 30 tokens: past the first capacity and its double
        c.begin(30)
        k, v = _kv(1, 30, step)
        k_all, v_all, _ = c.update(0, k, v)
        c.commit(torch.tensor([30]))
        written.append(k)
        assert torch.equal(k_all, torch.cat(written, 2)) and k_all.shape[2] == 30 * (step + 1)
        assert torch.equal(v_all, -k_all)


def test_kv_cache_large_blocks_and_wide_heads():
    """A first block past the initial capacity, a block that fits the head dimension (160)
    but not the capacity, then blocks that more than double it."""
    c = KVCache(1, torch.device("cpu"))
    written = []
    for step, n in enumerate((70, 30, 150, 400)):
        c.begin(n)
        k, v = _kv(1, n, step, h=1, d=160)
        k_all, _, _ = c.update(0, k, v)
        c.commit(torch.tensor([n]))
        written.append(k)
        assert torch.equal(k_all, torch.cat(written, 2))


def test_kv_cache_layers_written_out_of_order():
    c = KVCache(2, torch.device("cpu"))
    c.begin(2)
    k, v = _kv(2, 2, 0)
    c.update(1, k, v)  # layer 0 never written: its slot stays empty
    c.commit(torch.tensor([2, 1]))
    c.select_rows(torch.tensor([1]))
    c.begin(1)
    k2, v2 = _kv(1, 1, 1)
    k_all, _, _ = c.update(1, k2, v2)
    assert torch.equal(k_all[0, :, :1], k[1, :, :1]) and torch.equal(k_all[0, :, 1:2], k2[0])
    k_all0, _, _ = c.update(0, k2, v2)  # a layer's first write on a cache that has rows
    assert k_all0.shape == (1, 2, 2, 3) and torch.equal(k_all0[0, :, 1:2], k2[0])


def test_kv_cache_truncate_and_select_rows():
    c = KVCache(3, torch.device("cpu"))
    c.begin(4)
    k, v = _kv(3, 4, 0)
    c.update(0, k, v)
    c.commit(torch.tensor([4, 2, 3]))
    c.truncate(torch.tensor([1, 5, 3], dtype=torch.int32))  # never lengthens a row
    assert c.length.tolist() == [1, 2, 3] and c.length.dtype == torch.int64
    c.select_rows(torch.tensor([2, 0]))
    assert c.batch_size == 2 and c.length.tolist() == [3, 1]
    c.begin(1)
    k2, v2 = _kv(2, 1, 5)
    k_all, v_all, mask = c.update(0, k2, v2)
    assert torch.equal(k_all[0, :, :3], k[2, :, :3]) and torch.equal(k_all[0, :, 3:], k2[0])
    assert torch.equal(k_all[1, :, :1], k[0, :, :1]) and torch.equal(k_all[1, :, 1:2], k2[1])
    assert torch.equal(v_all[0, :, :3], v[2, :, :3])
    assert mask[1, 0, 0].tolist() == [True, True, False, False]
    c.select_rows(torch.tensor([1]))
    assert c.length.tolist() == [1]
    e = KVCache(0, torch.device("cpu"))
    assert e.begin(2).shape == (0, 2)


def _lm_target(seed=0, **kw):
    lm = TinyTorchLM(vocab=16, hidden=16, heads=2, layers=3, seed=seed)
    return lm, TorchTarget(lm, vocab_size=16, hidden_size=16, num_layers=3, **kw)


def test_torch_target_matches_full_recompute():
    lm, t = _lm_target()
    assert (t.vocab_size, t.hidden_size, t.num_layers) == (16, 16, 3)
    assert t.device == torch.device("cpu") and t.dtype == torch.float32
    assert t.max_positions is None and t.cache is None
    prompts = torch.tensor([[3, 4, 5, 6], [7, 8, 0, 0]])
    lens = torch.tensor([4, 2])
    t.reset(2)
    with torch.no_grad():
        step = t.prefill(prompts, lens)
        full0, full1 = lm.full_logits(prompts[:1]), lm.full_logits(prompts[1:, :2])
        assert step.logits.shape == (2, 1, 16) and step.features is None
        torch.testing.assert_close(step.logits[0, 0], full0[0, -1])
        torch.testing.assert_close(step.logits[1, 0], full1[0, -1])
        assert t.lengths().tolist() == [4, 2]
        nxt = torch.tensor([[9, 10], [11, 12]])
        out = t.forward(nxt, torch.tensor([2, 1]))
        assert out.logits.shape == (2, 2, 16) and t.lengths().tolist() == [6, 3]
        torch.testing.assert_close(out.logits[0], lm.full_logits(
            torch.tensor([[3, 4, 5, 6, 9, 10]]))[0, 4:])
        torch.testing.assert_close(out.logits[1, 0], lm.full_logits(
            torch.tensor([[7, 8, 11]]))[0, 2])
        t.truncate(torch.tensor([5, 3]))
        t.select_rows(torch.tensor([1, 0]))
        assert t.lengths().tolist() == [3, 5]
        out = t.forward(torch.tensor([[13], [14]]), torch.tensor([1, 1]))
        torch.testing.assert_close(out.logits[0, 0], lm.full_logits(
            torch.tensor([[7, 8, 11, 13]]))[0, -1])
        torch.testing.assert_close(out.logits[1, 0], lm.full_logits(
            torch.tensor([[3, 4, 5, 6, 9, 14]]))[0, -1])


def test_torch_target_features_and_arguments():
    lm, t = _lm_target(max_positions=64, device="cpu", dtype=torch.bfloat16)
    assert t.max_positions == 64 and t.device == torch.device("cpu")
    assert t.dtype == torch.bfloat16
    t.reset(1, [-1, 1])
    toks = torch.tensor([[3, 4, 5]])
    with torch.no_grad():
        step = t.prefill(toks, torch.tensor([3]))
        cache = KVCache(1, torch.device("cpu"))
        _, hidden = lm(toks, cache.begin(3), cache)
    assert step.features.shape == (1, 3, 32)
    torch.testing.assert_close(step.features, torch.cat([hidden[0], hidden[2]], -1))
    t.reset(1)
    assert t.prefill(toks, torch.tensor([3])).features is None
    with pytest.raises(ValueError, match="final layer 2"):
        t.reset(1, [2])
    with pytest.raises(TypeError) as e:
        TorchTarget(None, vocab_size=4, hidden_size=4, num_layers=1)
    assert str(e.value) == "forward must be callable (tokens, positions, cache) -> logits"
    meta = TorchTarget(lm, vocab_size=16, hidden_size=16, num_layers=3, device="meta")
    assert meta.device == torch.device("meta")
    t2 = TorchTarget(lambda tok, pos, cache: torch.zeros(tok.shape[0], tok.shape[1], 4),
                     vocab_size=4.0, hidden_size=8.0, num_layers=2.0)
    assert (t2.vocab_size, t2.hidden_size, t2.num_layers) == (4, 8, 2)
    assert isinstance(t2.vocab_size, int) and isinstance(t2.num_layers, int)
    with pytest.raises(RuntimeError) as e:
        t2.forward(toks, torch.tensor([3]))
    assert str(e.value) == "TorchTarget: call reset(batch_size, target_layer_ids) first"
    t2.reset(1)
    assert t2.forward(toks, torch.tensor([3])).logits.shape == (1, 3, 4)  # logits alone
    t2.reset(1, [0])
    with pytest.raises(ValueError, match="forward returned no hidden states"):
        t2.forward(toks, torch.tensor([3]))
    bad = TorchTarget(lambda tok, pos, cache: torch.zeros(tok.shape[0], 4), vocab_size=4,
                      hidden_size=8, num_layers=1)
    bad.reset(1)
    with pytest.raises(ValueError, match=r"logits of shape \(1, 4\), expected \[1, 3, vocab\]"):
        bad.forward(toks, torch.tensor([3]))
    short = TorchTarget(lambda tok, pos, cache: torch.zeros(tok.shape[0], 2, 4), vocab_size=4,
                        hidden_size=8, num_layers=1)
    short.reset(1)
    with pytest.raises(ValueError, match=r"logits of shape \(1, 2, 4\)"):
        short.forward(toks, torch.tensor([3]))


def test_prefill_of_an_empty_row_reads_position_zero():
    seen = []

    def fwd(tok, pos, cache):
        seen.append(pos.clone())
        return (tok[..., None].float() * torch.ones(4)) + pos[..., None]

    t = TorchTarget(fwd, vocab_size=4, hidden_size=4, num_layers=1)
    t.reset(2)
    step = t.prefill(torch.tensor([[5, 6, 7], [8, 9, 9]]), torch.tensor([3, 0]))
    assert step.logits[:, 0, 0].tolist() == [7 + 2, 8 + 0]
    assert t.lengths().tolist() == [3, 0]


def test_as_target():
    _, t = _lm_target()
    assert as_target(t) is t
    with pytest.raises(TypeError, match="got int"):
        as_target(3)

    class PrefillOnly:
        def prefill(self):
            pass

    with pytest.raises(TypeError, match="Target adapter"):
        as_target(PrefillOnly())

    class ConfigOnly:
        config = None

    with pytest.raises(TypeError, match="Hugging Face causal LM, got ConfigOnly"):
        as_target(ConfigOnly())
    from tiny_models import tiny_hf
    from dspark_ext.targets.hf_target import HFTarget
    wrapped = as_target(tiny_hf(layers=1))
    assert isinstance(wrapped, HFTarget) and wrapped.vocab_size == 64
