"""markov_sample equals the float64 reference (tests/markov_cases.py explains the tie-aware
comparison): every head, logits and weight dtype, B, K in {1, 4, 7, 16}, V in {1, 7, 4096,
32000}, r in {1, 64, 256}; teacher-forced block mode equals the step mode. Outputs are
poisoned before every run (conftest.py), so an unwritten element fails."""
import math

import pytest
import torch

from markov_cases import (HEADS, assert_close_to_reference, make_case, native, native_wrapper,
                          reference)

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
# (B, K, V, r)
SHAPES = [(2, 1, 1, 1), (3, 4, 7, 64), (2, 4, 4096, 256), (2, 16, 1000, 64), (5, 7, 7, 1)]


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("B,K,V,r", SHAPES)
def test_matches_reference(head, dtype, B, K, V, r):
    c = make_case(head, B, K, V, r, dtype=dtype, seed=V + K + r)
    assert_close_to_reference(c, native(c))


@pytest.mark.parametrize("head,dtype", [(h, torch.float32) for h in HEADS]
                         + [("vanilla", torch.bfloat16)], ids=str)
def test_matches_reference_large_vocab(head, dtype):
    c = make_case(head, 2, 4, 32000, 256, dtype=dtype, seed=1)
    assert_close_to_reference(c, native(c))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("conf", [None, "markov", "hidden", "linear"])
def test_bf16_weights_and_confidence_layouts(head, conf):
    c = make_case(head, 3, 5, 1000, 32, dtype=torch.bfloat16, wdtype=torch.bfloat16, conf=conf,
                  seed=7, head_bias=conf != "hidden")
    out = native(c)
    assert_close_to_reference(c, out)
    assert (out[3].shape[1] == 0) == (conf is None)


@pytest.mark.parametrize("head", HEADS)
def test_tokens_equal_reference_step_mode(head):
    """Under the same uniforms the reference's own sampling loop draws the native tokens
    (rows whose reference keys have a near-tie are compared only up to it)."""
    c = make_case(head, 6, 7, 2048, 64, seed=11)
    got = native(c)[0]
    want = reference(c)
    for b in range(6):
        ties = (want.margin[b] < 1e-3).nonzero()
        upto = int(ties[0, 0]) if len(ties) else 7
        assert torch.equal(got[b, :upto], want.draft_tokens[b, :upto]), (b, upto)
    assert (want.margin >= 1e-3).float().mean() > 0.8  # the check above is not vacuous


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16], ids=str)
def test_teacher_forced_equals_step_mode(head, dtype):
    c = make_case(head, 3, 7, 1000, 64, dtype=dtype, seed=3)
    step = native(c)
    forced = native(c, teacher=step[0])
    for s, f in zip(step, forced):
        assert torch.equal(s, f)
    # the reference too: its block mode reproduces its sampling mode exactly
    ref_step = reference(c)
    ref_forced = reference(c, teacher=ref_step.draft_tokens)
    for name in ("draft_tokens", "draft_logits", "draft_lse", "confidence_logits"):
        assert torch.equal(getattr(ref_step, name), getattr(ref_forced, name)), name


def test_teacher_forced_other_tokens():
    """Teacher tokens that the sampler would not have drawn: outputs follow the teacher."""
    c = make_case("rnn", 3, 5, 500, 16, seed=5)
    teacher = torch.randint(0, 500, (3, 5), generator=torch.Generator().manual_seed(1))
    out = native(c, teacher=teacher)
    assert torch.equal(out[0], teacher)
    assert_close_to_reference(c, out, sampled=False)


def test_greedy_rows_are_argmax_of_z():
    c = make_case("gated", 4, 6, 2000, 32, temps=[0.0], seed=9)
    tokens, z, lse, _ = native(c)
    assert torch.equal(tokens, z.argmax(-1))
    torch.testing.assert_close(lse, torch.logsumexp(z, -1))


def test_masked_position_gives_minus_one_and_zero_embedding():
    c = make_case("vanilla", 3, 4, 50, 8, seed=2, temps=[1.0, 0.0, 0.5])
    c["base_logits"][1, 1] = math.nan  # every z of row 1 at position 1 is NaN
    c["base_logits"][2, 2, ::2] = math.inf  # half of row 2 masked at position 2
    tokens, z, lse, _ = out = native(c)
    assert tokens[1, 1] == -1 and lse[1, 1] == -math.inf
    assert tokens[2, 2] % 2 == 1
    want = assert_close_to_reference(c, out)
    # position 2 of row 1 conditions on a zero embedding: z = base
    torch.testing.assert_close(want.draft_logits[1, 2], c["base_logits"][1, 2])


def test_wrapper_scalars_and_result_fields():
    c = make_case("gated", 3, 4, 300, 16, seed=4)
    res = native_wrapper(c)
    assert torch.equal(res.draft_tokens, native(c)[0])
    got = __import__("dspark_ext").markov_sample(
        c["base_logits"], c["anchor_tokens"], c["w1"], c["w2"], 1.0, 17, 5)
    c2 = dict(c, head="vanilla", hidden=None, head_weight=None, head_bias=None,
              conf_weight=None, conf_bias=None, temperature=torch.ones(3),
              seed=17 + torch.arange(3), offset=torch.full((3,), 5))
    assert torch.equal(got.draft_tokens, native(c2)[0]) and got.confidence_logits is None


@pytest.mark.parametrize("head,B", [("rnn", 3), ("vanilla", 3), ("vanilla", 8)])
def test_independent_of_thread_count(head, B):
    c = make_case(head, B, 4, 20000, 64, seed=8)  # B = 3: the small-batch executor
    saved = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = native(c)
    finally:
        torch.set_num_threads(saved)
    for a, b in zip(one, native(c)):
        assert torch.equal(a, b)


def test_strided_base_logits_view():
    c = make_case("vanilla", 3, 4, 777, 8, seed=12)
    padded = torch.randn(3, 6, 780)
    padded[:, 1:5, 3:] = c["base_logits"]
    c["base_logits"] = padded[:, 1:5, 3:]
    assert_close_to_reference(c, native(c))


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("wdtype", [torch.float32, torch.bfloat16], ids=str)
def test_small_batch_and_batched_executors_agree(head, wdtype):
    """Up to 4 rows the CPU op computes the bias lane by lane (the vanilla head's whole step
    loop natively), above that with one GEMM per step (csrc/cpu/markov_cpu.cpp). The first
    rows of an 8-row call, run alone, give the same tokens, and z / lse / confidences equal
    up to the bias's float32 summation order."""
    big = make_case(head, 8, 5, 3000, 64, wdtype=wdtype, seed=21)
    small = {k: v[:3] if isinstance(v, torch.Tensor) and v.dim() >= 1 and v.shape[0] == 8
             else v for k, v in big.items()}
    many, few = native(big), native(small)
    assert torch.equal(few[0], many[0][:3])
    for a, b in zip(few[1:], many[1:]):
        torch.testing.assert_close(a, b[:3], rtol=1e-5, atol=1e-4)
    assert_close_to_reference(small, few)
    assert_close_to_reference(big, many)

