"""CUDA paths of issue 20 against the CPU ops (marked ``cuda``: skipped without a GPU; listed
in bench/gpu_check.sh): int32 indices and vLLM's inclusive offsets, draft_lse, sparse draft
rows (densified by their own kernel), markov_sample(topk), the dense Markov kernel at r = 512
(the plan that reads u from global memory where shared memory is short), and the input-error
word the kernels set for rows they leave empty. The error-word bits are also checked here on
the CPU against the C++ constants."""
import os
import re

import pytest
import torch

import dspark_ext
from dspark_ext.ops.input_errors import INPUT_ERRORS, cuda_input_errors

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def test_error_bits_match_the_kernels():
    with open(os.path.join(ROOT, "csrc", "core", "verify_problem.h")) as f:
        src = f.read()
    bits = {int(v) for v in re.findall(r"constexpr int kInputError\w+ = (\d+);", src)}
    assert bits == set(INPUT_ERRORS) and len(bits) == 4


def test_cuda_input_errors_without_a_gpu():
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert cuda_input_errors() == []
    dspark_ext.check_cuda_inputs()  # nothing to report


def _ragged(vocab=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    num = [3, 0, 2, 4]
    t = torch.randn(sum(num) + len(num), vocab, generator=g)
    d = torch.randn(sum(num), vocab, generator=g)
    x = torch.randint(0, vocab, (sum(num),), generator=g)
    cu = torch.tensor([0, 3, 3, 5, 9])
    return t, x, d, cu


@pytest.mark.cuda
@cuda
def test_int32_inclusive_lse_and_sparse_rows_match_cpu():
    t, x, d, cu = _ragged()
    lse = torch.logsumexp(d / 0.8, -1)
    kw = dict(max_num_draft=4, cu_inclusive=True, draft_lse=lse)
    cpu = dspark_ext.rejection_sample(t, x.int(), d, 0.8, torch.arange(4), 5,
                                      cu_num_draft=cu[1:].int(), **kw)
    gpu = dspark_ext.rejection_sample(t.cuda(), x.int().cuda(), d.cuda(), 0.8,
                                      torch.arange(4).cuda(), 5, cu_num_draft=cu[1:].int().cuda(),
                                      **{**kw, "draft_lse": lse.cuda()})
    assert torch.equal(cpu.out_tokens, gpu.out_tokens.cpu())
    ids = torch.stack([torch.randperm(500)[:40] for _ in range(9)])
    rows = torch.randn(9, 40)
    cpu = dspark_ext.rejection_sample(t, x, rows, 1.0, torch.arange(4), 2, cu_num_draft=cu,
                                      max_num_draft=4, draft_ids=ids)
    gpu = dspark_ext.rejection_sample(t.cuda(), x.cuda(), rows.cuda(), 1.0,
                                      torch.arange(4).cuda(), 2, cu_num_draft=cu.cuda(),
                                      max_num_draft=4, draft_ids=ids.cuda())
    assert torch.equal(cpu.out_tokens, gpu.out_tokens.cpu())


@pytest.mark.cuda
@cuda
def test_bad_values_set_the_error_word():
    cuda_input_errors()  # clear what earlier tests left
    t, x, d, cu = _ragged()
    bad = cu.clone()
    bad[0] = 1  # shifted offsets: every row must be left empty
    res = dspark_ext.rejection_sample(t.cuda(), x.cuda(), d.cuda(), 1.0, torch.arange(4).cuda(),
                                      0, cu_num_draft=bad.cuda(), max_num_draft=4)
    assert int(res.num_emitted.sum()) == 0
    with pytest.raises(RuntimeError, match="does not start at 0"):
        dspark_ext.check_cuda_inputs()
    temps = torch.tensor([1.0, -1.0, 1.0, 1.0]).cuda()
    res = dspark_ext.rejection_sample(t.cuda(), x.cuda(), d.cuda(), temps, torch.arange(4).cuda(),
                                      0, cu_num_draft=cu.cuda(), max_num_draft=4)
    assert int(res.num_emitted[1]) == 0 and int(res.num_emitted[0]) > 0
    assert cuda_input_errors() == [INPUT_ERRORS[8]]
    assert cuda_input_errors() == []  # read and cleared


@pytest.mark.cuda
@cuda
@pytest.mark.parametrize("rank", [256, 512])
def test_markov_dense_and_topk_match_cpu(rank):
    g = torch.Generator().manual_seed(rank)
    B, K, V = 6, 5, 3000
    base = torch.randn(B, K, V, generator=g) * 2
    w1 = torch.randn(V, rank, generator=g) * 0.3
    w2 = torch.randn(V, rank, generator=g) * (1.0 / rank ** 0.5)
    anchor = torch.randint(0, V, (B,), generator=g)
    args = lambda dev: (base.to(dev), anchor.to(dev), w1.to(dev), w2.to(dev), 0.0,  # noqa
                        torch.arange(B).to(dev), 3)
    cpu = dspark_ext.markov_sample(*args("cpu"))
    gpu = dspark_ext.markov_sample(*args("cuda"))
    assert (cpu.draft_tokens == gpu.draft_tokens.cpu()).float().mean() > 0.9
    torch.testing.assert_close(cpu.draft_logits, gpu.draft_logits.cpu(), rtol=1e-4, atol=1e-3)
    ct = dspark_ext.markov_sample(*args("cpu"), topk=64)
    gt = dspark_ext.markov_sample(*args("cuda"), topk=64)
    assert torch.equal(ct.draft_ids, gt.draft_ids.cpu())
    assert (ct.draft_tokens == gt.draft_tokens.cpu()).float().mean() > 0.9
    torch.testing.assert_close(ct.draft_logits, gt.draft_logits.cpu(), rtol=1e-4, atol=1e-3)
