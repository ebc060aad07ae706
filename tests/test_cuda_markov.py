"""CUDA markov_sample equals the CPU op (skipped without a CUDA device and a CUDA build).

The two executors sum the r products of the bias in different orders, so z differs by float32
rounding and a token may differ only where the CPU's two largest keys are within KEY_TIE: each
row is compared token for token up to such a near-tie, and the CUDA tokens are checked against
the keys of the CUDA z (as the CPU tokens are in test_markov_exact.py)."""
import math

import pytest
import torch

from dspark_ext import reference_markov as refm
from markov_cases import (HEADS, KEY_TIE, assert_tokens_follow_keys, make_case, native,
                          z_tolerance)

pytestmark = pytest.mark.cuda


def to_cuda(c):
    return {k: (v.cuda() if isinstance(v, torch.Tensor) else v) for k, v in c.items()}


def near_tie_positions(c, z):
    """[B, K] bool: the CPU keys' top-2 gap at (b, k) is below KEY_TIE."""
    B, K, V = z.shape
    out = torch.zeros(B, K, dtype=torch.bool)
    if V < 2:
        return out
    for k in range(K):
        keys, _ = refm.draft_keys(z[:, k], c["temperature"], c["seed"], c["offset"], k)
        top2 = keys.topk(2, dim=-1).values
        out[:, k] = (top2[:, 0] - top2[:, 1]) < KEY_TIE
    return out


def compare(c):
    cpu = native(c)
    cc = to_cuda(c)
    gpu = [t.cpu() for t in native(cc)]
    ties = near_tie_positions(c, cpu[1])
    for b in range(cpu[0].shape[0]):
        t = ties[b].nonzero()
        upto = int(t[0, 0]) if len(t) else cpu[0].shape[1]  # a near-tie may go either way
        assert torch.equal(gpu[0][b, :upto], cpu[0][b, :upto]), (b, upto)
    assert_tokens_follow_keys(c, gpu[0], gpu[1])
    # teacher-forced with the CPU tokens: same conditioning, so z / lse / conf must agree
    forced = [t.cpu() for t in native(cc, teacher=cpu[0].cuda())]
    rtol, atol = z_tolerance(cpu[1].dtype)
    torch.testing.assert_close(forced[1].double(), cpu[1].double(), rtol=rtol, atol=atol,
                               equal_nan=True)
    torch.testing.assert_close(forced[2], cpu[2], rtol=1e-5, atol=1e-4, equal_nan=True)
    torch.testing.assert_close(forced[3], cpu[3], rtol=1e-4, atol=1e-4)
    assert torch.equal(forced[0], cpu[0])


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("B,K,V,r", [(3, 4, 7, 1), (5, 7, 4096, 64), (40, 4, 1000, 256),
                                     (2, 16, 32000, 256), (3, 2, 999, 512)])
def test_cuda_equals_cpu(head, dtype, B, K, V, r):
    compare(make_case(head, B, K, V, r, dtype=dtype, seed=B + K + V + r))


@pytest.mark.parametrize("head", HEADS)
def test_cuda_bf16_weights_large_vocab(head):
    compare(make_case(head, 4, 7, 151936, 256, dtype=torch.bfloat16, wdtype=torch.bfloat16,
                      seed=1))


def test_cuda_greedy_and_masked():
    c = make_case("vanilla", 4, 4, 300, 16, temps=[0.0, 1.0], seed=3)
    c["base_logits"][1, 1] = math.nan
    compare(c)


def test_cuda_invalid_rows_emit_minus_one():
    c = to_cuda(make_case("gated", 3, 4, 100, 8, seed=4))
    c["anchor_tokens"][1] = 100
    c["temperature"][2] = -1.0
    tokens = native(c)[0].cpu()
    assert (tokens[1] == -1).all() and (tokens[2] == -1).all() and (tokens[0] >= 0).all()


def test_cuda_no_host_sync_and_stream():
    c = to_cuda(make_case("rnn", 8, 7, 5000, 64, seed=5))
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = native(c)
    s.synchronize()
    assert torch.equal(out[0].cpu(), native(c)[0].cpu())


def test_cuda_opcheck_and_compile():
    import dspark_ext
    from markov_cases import op_args

    c = to_cuda(make_case("gated", 3, 4, 37, 8))
    torch.library.opcheck(torch.ops.dspark.markov_sample.default, op_args(c))
    f = lambda base, a: dspark_ext.markov_sample(  # noqa: E731
        base, a, c["w1"], c["w2"], 1.0, 3, 0).draft_tokens
    assert torch.equal(torch.compile(f, fullgraph=True)(c["base_logits"], c["anchor_tokens"]),
                       f(c["base_logits"], c["anchor_tokens"]))
