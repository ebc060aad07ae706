"""The stream callback: the tokens it hands over, joined per request, are exactly
``new_tokens`` (nothing after an EOS, nothing past max_new_tokens, nothing for a finished
request), with an EOS in the middle of a round, max_new_tokens cutting a round, and requests
finishing at different rounds; greedy and sampled, through the decoder and through
transformers' custom_generate (``on_tokens``)."""
import pytest
import torch

import dspark_ext.hf
from dspark_ext import ModelDrafter, NgramDrafter, SpeculativeDecoder, TorchTarget
from tiny_models import TinyTorchLM, tiny_hf

V = 16
K = 4
PROMPTS = [[3, 4, 5, 6, 7, 8], [9, 10, 11], [1, 2, 1, 2, 1, 2], [15], [5, 5, 5, 5]]


class Stream:
    def __init__(self):
        self.calls = []

    def __call__(self, fresh):
        assert isinstance(fresh, dict)
        self.calls.append({int(r): list(t) for r, t in fresh.items()})

    def joined(self, n):
        got = {r: [] for r in range(n)}
        for c in self.calls:
            for r, t in c.items():
                got[r].extend(t)
        return [got[r] for r in range(n)]

    def last_call(self, r):
        """Index of the last call that gave request r tokens."""
        return max(i for i, c in enumerate(self.calls) if c.get(r))


def check(stream, out, eos=(), max_new=None):
    n = len(out.new_tokens)
    assert stream.joined(n) == out.new_tokens
    assert len(stream.calls) == out.stats.num_rounds + 1        # the first token, then rounds
    for r, toks in enumerate(out.new_tokens):
        if max_new is not None:
            assert len(toks) <= max_new
        for t in toks[:-1]:
            assert t not in eos
        finished = (toks and toks[-1] in eos) or (max_new is not None and len(toks) == max_new)
        if finished:
            # Once finished, a request never appears again.
            last = stream.last_call(r)
            assert all(r not in c for c in stream.calls[last + 1:]), r


@pytest.fixture(scope="module")
def lm():
    return TinyTorchLM(vocab=V, hidden=16, heads=2, seed=1)


def target(lm):
    return TorchTarget(lm, vocab_size=V, hidden_size=16, num_layers=2)


def copy_drafter(lm):
    return ModelDrafter(target(lm))


def other_drafter():
    return ModelDrafter(TorchTarget(TinyTorchLM(vocab=V, hidden=16, heads=2, layers=1, seed=6),
                                    vocab_size=V, hidden_size=16, num_layers=1))


def test_eos_in_the_middle_of_a_round(lm):
    # A copy of the target at T = 0 accepts every draft: round r (>= 1) emits new tokens
    # 1 + 5 (r - 1) .. 5 r. Pick an EOS that row 0 first emits strictly inside a round.
    free = SpeculativeDecoder(target(lm), copy_drafter(lm), gamma=K).generate(
        PROMPTS, max_new_tokens=24)
    row = free.new_tokens[0]
    j = next(i for i in range(6, 24) if (i - 1) % (K + 1) not in (0, K) and row[i] not in row[:i])
    eos = row[j]
    s = Stream()
    out = SpeculativeDecoder(target(lm), copy_drafter(lm), gamma=K).generate(
        PROMPTS, max_new_tokens=24, eos_token_id=eos, stream=s)
    assert out.new_tokens[0] == row[: j + 1]
    check(s, out, eos={eos}, max_new=24)
    # The round that emitted row 0's EOS had drafts after it accepted: they are not streamed.
    assert out.stats.accepted().max() == K


@pytest.mark.parametrize("max_new", [1, 2, 5, 6, 7, 9, 11, 13])
def test_max_new_tokens_cuts_a_round(lm, max_new):
    s = Stream()
    out = SpeculativeDecoder(target(lm), copy_drafter(lm), gamma=K).generate(
        PROMPTS, max_new_tokens=max_new, stream=s)
    assert all(len(t) == max_new for t in out.new_tokens)
    check(s, out, max_new=max_new)
    # Every call but the first hands over K + 1 tokens, except a last one cut short.
    sizes = [len(c[0]) for c in s.calls[1:]]
    assert sizes[:-1] == [K + 1] * (len(sizes) - 1) and 1 <= (sizes or [1])[-1] <= K + 1


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eos", [(), (2,), (2, 7)])
def test_rows_finish_at_different_rounds(lm, seed, eos):
    s = Stream()
    out = SpeculativeDecoder(target(lm), other_drafter(), gamma=K).generate(
        PROMPTS * 2, max_new_tokens=15, temperature=1.0, seed=seed,
        eos_token_id=list(eos) or None, stream=s)
    check(s, out, eos=set(eos), max_new=15)
    assert len({s.last_call(r) for r in range(len(PROMPTS) * 2)}) > 1


def test_ngram_greedy_with_eos(lm):
    s = Stream()
    out = SpeculativeDecoder(target(lm), NgramDrafter(), gamma=K).generate(
        PROMPTS, max_new_tokens=20, eos_token_id=[3, 9], stream=s)
    check(s, out, eos={3, 9}, max_new=20)


def test_custom_generate_on_tokens():
    model = tiny_hf("qwen3", vocab=V, layers=2, seed=3)
    model.generation_config.eos_token_id = None
    ids = torch.tensor([[4, 5, 6, 4, 5, 6], [0, 0, 1, 2, 3, 1]])
    mask = torch.tensor([[1] * 6, [0, 0, 1, 1, 1, 1]])
    free = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                          pad_token_id=0)
    eos = int(free[0, 6 + 4])
    s = Stream()
    res = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False,
                         pad_token_id=0, eos_token_id=eos,
                         custom_generate=dspark_ext.hf.generate, drafter=ModelDrafter(model),
                         gamma=K, on_tokens=s, return_dict_in_generate=True)
    seq = res.sequences[:, 6:].tolist()
    joined = s.joined(2)
    for r in range(2):
        assert seq[r][: len(joined[r])] == joined[r]
        assert all(t == 0 for t in seq[r][len(joined[r]):])     # the rest is padding
        if eos in joined[r]:
            assert joined[r].index(eos) == len(joined[r]) - 1
    assert joined[0][-1] == eos and len(joined[0]) <= 5
