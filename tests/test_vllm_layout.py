"""The vLLM plugin's layout code (issue 21): vLLM's flattened speculative-decoding inputs ->
the ragged layout of dspark's ops. Pure tensor code, imported without vLLM (the plugin's
modules never import vLLM at import time)."""
import torch

from dspark_ext.integrations.vllm import layout as L


def test_counts():
    counts = L.draft_counts(torch.tensor([2, 2, 5], dtype=torch.int32))
    assert counts.dtype == torch.int64 and counts.tolist() == [2, 0, 3]
    assert L.draft_counts(torch.tensor([4])).tolist() == [4]
    assert L.draft_counts(torch.zeros(0, dtype=torch.int32)).tolist() == []
    rows = L.expand_to_rows(torch.tensor([7.0, 8.0, 9.0]), counts, 5)
    assert rows.tolist() == [7.0, 7.0, 9.0, 9.0, 9.0]


def test_target_logits_dtype_and_layout():
    for dt in L.KERNEL_DTYPES:
        x = torch.randn(3, 5).to(dt)
        assert L.target_logits(x) is x  # read as they are: no copy
    assert L.KERNEL_DTYPES == (torch.float32, torch.bfloat16, torch.float16)
    d = torch.randn(3, 5, dtype=torch.float64)
    out = L.target_logits(d)
    assert out.dtype == torch.float32 and torch.allclose(out.double(), d, atol=1e-6)
    t = torch.randn(5, 3).t()  # vocabulary stride 3
    out = L.target_logits(t)
    assert out.stride(-1) == 1 and torch.equal(out, t)
    rows_strided = torch.randn(6, 5)[::2]  # row stride 10, vocabulary contiguous: kept
    assert L.target_logits(rows_strided) is rows_strided


def test_draft_inputs():
    rows = torch.randn(4, 6)
    assert L.draft_inputs(rows, None) == (rows, None)
    probs = torch.softmax(torch.randn(4, 6), -1)
    r, p = L.draft_inputs(rows, probs)
    assert r is rows and p is probs
    rb = rows.bfloat16()
    r, p = L.draft_inputs(rb, probs)  # bf16 logits next to float32 probabilities
    assert r.dtype == p.dtype == torch.float32
    assert torch.equal(r, rb.float()) and torch.equal(p, probs)
    r, p = L.draft_inputs(rows.double(), probs.half())  # never narrower than the inputs
    assert r.dtype == p.dtype == torch.float32
    pt = torch.softmax(torch.randn(6, 4), 0).t()
    r, p = L.draft_inputs(rows, pt)
    assert p.stride(-1) == 1 and torch.equal(p, pt) and r is rows
    every_other = torch.softmax(torch.randn(4, 12), -1)[:, ::2]  # vocabulary stride 2
    r, p = L.draft_inputs(rows, every_other)
    assert p.stride(-1) == 1 and torch.equal(p, every_other)


def test_vllm_output():
    out = torch.tensor([[3, 4, -1], [5, -1, -1]])
    v = L.vllm_output(out)
    assert v.dtype == torch.int32 and v.tolist() == out.tolist()
