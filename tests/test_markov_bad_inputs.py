"""Bad input to markov_sample gets a clear error naming the argument (design §9)."""
import math

import pytest
import torch

import dspark_ext
from markov_cases import make_case, native, native_wrapper


def case(head="vanilla", **kw):
    return make_case(head, 3, 4, 50, 8, **kw)


def expect(c, match, teacher=None):
    with pytest.raises(RuntimeError, match=match):
        native(c, teacher)


@pytest.mark.parametrize("mutate,match", [
    (lambda c: c.update(base_logits=c["base_logits"][0]), "base_logits must be 3-D"),
    (lambda c: c.update(base_logits=c["base_logits"].double()), "base_logits must be float32"),
    (lambda c: c.update(base_logits=c["base_logits"][:, :0]), "K >= 1"),
    (lambda c: c.update(base_logits=c["base_logits"].transpose(1, 2).contiguous()
                        .transpose(1, 2)), "contiguous in its last"),
    (lambda c: c.update(w1=c["w1"][:-1]), r"w1 .* must be \[V, r\]"),
    (lambda c: c.update(w1=c["w1"][:, :-1]), r"w1 .* must be \[V, r\]"),
    (lambda c: c.update(w2=c["w2"][:-1]), r"w2 .* must be \[V, r\] with V = 50"),
    (lambda c: c.update(w1=torch.zeros(50, 513), w2=torch.zeros(50, 513)), "rank r"),
    (lambda c: c.update(w2=c["w2"].half()), "w2 .* must be float32 or bfloat16"),
    (lambda c: c.update(anchor_tokens=c["anchor_tokens"][:2]), "anchor_tokens must be 1-D"),
    (lambda c: c.update(anchor_tokens=c["anchor_tokens"].int()), "anchor_tokens must be Long"),
    (lambda c: c["anchor_tokens"].__setitem__(1, 50), r"anchor_tokens\[1\] = 50 is outside"),
    (lambda c: c["anchor_tokens"].__setitem__(0, -1), r"anchor_tokens\[0\] = -1 is outside"),
    (lambda c: c["temperature"].__setitem__(2, -0.5), r"temperature\[2\] must be finite"),
    (lambda c: c["temperature"].__setitem__(2, math.nan), r"temperature\[2\] must be finite"),
    (lambda c: c.update(seed=c["seed"][:1]), "seed must be 1-D"),
    (lambda c: c.update(offset=c["offset"].float()), "offset must be Long"),
    (lambda c: c.update(head="lstm"), "head must be 'vanilla', 'gated' or 'rnn'"),
])
def test_vanilla_bad_inputs(mutate, match):
    c = case(conf=None)
    mutate(c)
    expect(c, match)


@pytest.mark.parametrize("head", ["gated", "rnn"])
def test_head_weights(head):
    c = case(head)
    expect(dict(c, hidden=None), "hidden .* is required")
    expect(dict(c, head_weight=None), "needs (gate|joint)_weight")
    expect(dict(c, head_weight=c["head_weight"][:, 1:]), "(gate|joint)_weight .* must be")
    expect(dict(c, head_bias=c["head_bias"][1:]), "(gate|joint)_bias .* must be 1-D")
    expect(dict(c, hidden=c["hidden"][:, :3]), r"hidden must be \[B, K, d\]")
    expect(dict(c, hidden=c["hidden"][:, :, 1:]), "(gate|joint)_weight .* must be")
    expect(dict(c, head="vanilla"), "vanilla head takes no gate/joint weights")


def test_confidence_weights():
    c = case("vanilla")
    expect(dict(c, hidden=None), "hidden .* is required by the confidence head")
    expect(dict(c, conf_weight=c["conf_weight"][1:]), r"conf_weight must be \[d \+ r\]")
    expect(dict(c, conf_bias=torch.zeros(2)), "conf_bias must hold one value")
    expect(dict(c, conf_weight=None), "conf_bias given without conf_weight")


def test_teacher_tokens():
    c = case()
    expect(c, r"teacher_tokens must be \[B, K\]", teacher=torch.zeros(3, 3, dtype=torch.int64))
    expect(c, "teacher_tokens must be int64", teacher=torch.zeros(3, 4, dtype=torch.int32))
    bad = torch.zeros(3, 4, dtype=torch.int64)
    bad[2, 1] = 50
    expect(c, r"teacher_tokens\[2, 1\] = 50 is outside", teacher=bad)


def test_wrapper_checks_head_arguments():
    c = case("gated")
    with pytest.raises(ValueError, match="head must be one of"):
        dspark_ext.markov_sample(c["base_logits"], c["anchor_tokens"], c["w1"], c["w2"], 1.0,
                                 0, 0, head="GRU")
    with pytest.raises(ValueError, match="belong to head='gated'"):
        dspark_ext.markov_sample(c["base_logits"], c["anchor_tokens"], c["w1"], c["w2"], 1.0,
                                 0, 0, head="rnn", gate_weight=c["head_weight"])
    with pytest.raises(TypeError, match="temperature must be a tensor"):
        dspark_ext.markov_sample(c["base_logits"], c["anchor_tokens"], c["w1"], c["w2"], "hot",
                                 0, 0)


def test_empty_batch():
    c = case("rnn")
    for key in ("base_logits", "anchor_tokens", "temperature", "seed", "offset", "hidden"):
        c[key] = c[key][:0]
    tokens, z, lse, conf = native(c)
    assert tokens.shape == (0, 4) and z.shape == (0, 4, 50) and lse.shape == (0, 4)
    assert conf.shape == (0, 4)
    assert native_wrapper(c).draft_tokens.shape == (0, 4)
