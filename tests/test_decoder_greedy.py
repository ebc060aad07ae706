"""Greedy speculative decoding equals the target's own greedy decoding token for token
(design §8): both target adapters, Qwen3 and Llama, left padding, every verify method at T = 0,
gamma in {1, 4, 7, 16}, every drafter type, and through transformers' custom_generate."""
import pytest
import torch

import dspark_ext
import dspark_ext.hf
from dspark_ext import ModelDrafter, NgramDrafter, SpeculativeDecoder, TorchTarget
from tiny_models import TinyTorchLM, tiny_hf

VOCAB = 64
NEW = 24


def prompts(batch: int, seed: int = 0, repeat: bool = True):
    """Left-padded prompts of different lengths; with ``repeat`` the prompts repeat a motif so
    the n-gram drafter finds matches."""
    g = torch.Generator().manual_seed(seed)
    lengths = [12 - 3 * (i % 3) for i in range(batch)]
    ids = torch.zeros((batch, max(lengths)), dtype=torch.int64)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        motif = torch.randint(1, VOCAB, (4,), generator=g)
        row = motif.repeat(4)[:n] if repeat else torch.randint(1, VOCAB, (n,), generator=g)
        ids[i, -n:] = row
        mask[i, -n:] = 1
    return ids, mask


@pytest.fixture(scope="module", params=["qwen3", "llama"])
def hf_target(request):
    model = tiny_hf(request.param, vocab=VOCAB, layers=3, seed=1)
    # No default EOS (Llama's config has one): rows run to max_new_tokens unless a test
    # passes eos_token_id itself.
    model.generation_config.eos_token_id = None
    return model


def make_drafter(kind: str, target):
    if kind == "ngram":
        return NgramDrafter(max_ngram=3)
    if kind == "small_lm":
        return ModelDrafter(tiny_hf("qwen3", vocab=VOCAB, layers=1, seed=7))
    if kind == "perfect":
        return ModelDrafter(target)
    if kind in ("dspark", "dflash"):
        from dspark_cases_decoder import make_dspark_for
        return make_dspark_for(target, markov=(kind == "dspark"), block_size=16)
    raise ValueError(kind)


DRAFTERS = ["ngram", "small_lm", "perfect", "dspark", "dflash"]


# Every verify method and every gamma in {1, 4, 7, 16} appears with every drafter.
CASES = [(1, 4, "greedy"), (3, 7, "token"), (4, 16, "block"), (2, 1, "token"),
         (3, 4, "block"), (2, 7, "greedy")]


@pytest.mark.slow
@pytest.mark.parametrize("drafter_kind", DRAFTERS)
@pytest.mark.parametrize("batch,gamma,verify", CASES)
def test_hf_greedy_equals_generate(hf_target, drafter_kind, verify, batch, gamma):
    ids, mask = prompts(batch, seed=batch + gamma)
    ref = hf_target.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=0)
    dec = SpeculativeDecoder(hf_target, make_drafter(drafter_kind, hf_target), gamma=gamma,
                             verify=verify)
    out = dec.generate(ids, mask, max_new_tokens=NEW)
    assert torch.equal(out.sequences, ref)
    st = out.stats
    assert st.num_rounds >= 1 and (st.accepted() <= st.verified()).all()
    if drafter_kind == "perfect":  # every draft accepted (up to the max_new_tokens cap)
        assert (st.accepted() == st.verified()).all()


def torch_greedy(lm, prompt, n):
    seq = torch.tensor([prompt])
    for _ in range(n):
        seq = torch.cat([seq, lm.full_logits(seq)[0, -1].argmax().view(1, 1)], 1)
    return seq[0, len(prompt):].tolist()


@pytest.mark.parametrize("drafter_kind", ["ngram", "small_lm_torch", "perfect_torch"])
@pytest.mark.parametrize("gamma,verify", [(1, "greedy"), (4, "token"), (7, "block"),
                                          (16, "token")])
def test_torch_target_greedy(verify, drafter_kind, gamma):
    lm = TinyTorchLM(vocab=VOCAB, seed=3)
    target = TorchTarget(lm, vocab_size=VOCAB, hidden_size=32, num_layers=2)
    if drafter_kind == "ngram":
        drafter = NgramDrafter()
    else:
        draft_lm = lm if drafter_kind == "perfect_torch" else TinyTorchLM(vocab=VOCAB, seed=9,
                                                                           layers=1)
        drafter = ModelDrafter(TorchTarget(draft_lm, vocab_size=VOCAB, hidden_size=32,
                                           num_layers=2))
    ps = [[5, 6, 7, 5, 6, 7, 5], [9, 3], [1, 2, 3, 4, 1, 2, 3, 4, 1, 2]]
    out = SpeculativeDecoder(target, drafter, gamma=gamma, verify=verify).generate(
        ps, max_new_tokens=NEW)
    for i, p in enumerate(ps):
        assert out.new_tokens[i] == torch_greedy(lm, p, NEW), i


@pytest.mark.parametrize("drafter_kind", ["ngram", "small_lm", "dspark"])
def test_custom_generate_matches(hf_target, drafter_kind):
    ids, mask = prompts(3, seed=11)
    ref = hf_target.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=0)
    out = hf_target.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=0, custom_generate=dspark_ext.hf.generate,
                             drafter=make_drafter(drafter_kind, hf_target), gamma=4)
    assert torch.equal(out, ref)
    res = hf_target.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=0, custom_generate=dspark_ext.hf.generate,
                             drafter=NgramDrafter(), return_dict_in_generate=True)
    assert torch.equal(res.sequences, ref)
    assert res.dspark_stats.num_rounds >= 1


def test_eos_ends_rows(hf_target):
    """An accepted EOS ends its row: nothing after it, other rows go on."""
    ids, mask = prompts(3, seed=5)
    free = SpeculativeDecoder(hf_target, ModelDrafter(hf_target), gamma=4).generate(
        ids, mask, max_new_tokens=NEW)
    eos = free.new_tokens[0][5]           # row 0's 6th token becomes the EOS
    ref = hf_target.generate(ids, attention_mask=mask, max_new_tokens=NEW, do_sample=False,
                             pad_token_id=0, eos_token_id=eos)
    out = SpeculativeDecoder(hf_target, ModelDrafter(hf_target), gamma=4).generate(
        ids, mask, max_new_tokens=NEW, eos_token_id=eos, pad_token_id=0)
    for i in range(3):
        toks = out.new_tokens[i]
        if eos in toks:
            assert toks.index(eos) == len(toks) - 1
        assert toks == free.new_tokens[i][: len(toks)]
        n_ref = ref.shape[1] - ids.shape[1]
        assert ref[i, ids.shape[1]: ids.shape[1] + len(toks)].tolist() == toks
        assert len(toks) == NEW or toks[-1] == eos or n_ref < NEW
    assert out.new_tokens[0] == free.new_tokens[0][:6]


def test_streaming_callback(hf_target):
    ids, mask = prompts(2, seed=2)
    got = {0: [], 1: []}

    def on_tokens(new):
        for row, toks in new.items():
            got[row].extend(toks)
    out = SpeculativeDecoder(hf_target, NgramDrafter(), gamma=4).generate(
        ids, mask, max_new_tokens=NEW, stream=on_tokens)
    assert got[0] == out.new_tokens[0] and got[1] == out.new_tokens[1]


def test_low_precision_targets_follow_their_greedy_argmax():
    """bf16 / fp16 HF targets: every emitted token is the target's arg-max given the emitted
    prefix (checked by one full forward over the final sequences), up to a near-tie margin
    (a block forward and a one-token forward round differently in low precision)."""
    for dtype in (torch.bfloat16, torch.float16):
        model = tiny_hf("qwen3", vocab=VOCAB, layers=2, seed=4, dtype=dtype)
        model.generation_config.eos_token_id = None
        ids, mask = prompts(3, seed=8)
        for drafter in (NgramDrafter(), ModelDrafter(model)):
            out = SpeculativeDecoder(model, drafter, gamma=4, verify="token").generate(
                ids, mask, max_new_tokens=16)
            seq = out.sequences
            full_mask = torch.cat([mask, torch.ones((3, seq.shape[1] - ids.shape[1]),
                                                    dtype=mask.dtype)], 1)
            with torch.no_grad():
                logits = model(seq, attention_mask=full_mask).logits.float()
            n = ids.shape[1]
            pred = logits[:, n - 1:-1]
            chosen = pred.gather(-1, seq[:, n:, None])[..., 0]
            gap = pred.max(-1).values - chosen
            assert (gap <= 0.02 * pred.abs().max()).all(), (dtype, gap.max())
            assert float(gap.mean()) < 1e-3 * float(pred.abs().max())  # ties are rare
