"""The ops are proper torch ops: opcheck (schema, fake kernels, dispatch) and
torch.compile(fullgraph=True) (SPEC §9)."""
import pytest
import torch

import dspark_ext


def padded_args(batch=3, k=4, vocab=37, dtype=torch.float32, onehot=False):
    g = torch.Generator().manual_seed(0)
    t = torch.randn(batch, k + 1, vocab, generator=g).to(dtype)
    d = None if onehot else torch.randn(batch, k, vocab, generator=g).to(dtype)
    x = torch.randint(0, vocab, (batch, k), generator=g)
    temp = torch.tensor([0.0, 1.0, 0.5])[:batch].float()
    return t, x, d, temp, torch.arange(batch), torch.zeros(batch, dtype=torch.int64)


def ragged_args(vocab=37):
    g = torch.Generator().manual_seed(1)
    cu = torch.tensor([0, 2, 2, 5])
    t = torch.randn(8, vocab, generator=g)
    d = torch.randn(5, vocab, generator=g)
    x = torch.randint(0, vocab, (5,), generator=g)
    return t, x, d, cu


OPCHECK_CASES = {
    "verify_greedy": lambda: (torch.ops.dspark.verify_greedy.default,
                              padded_args()[:2] + (torch.tensor([4, 1, 0]),)),
    "verify_greedy_no_num": lambda: (torch.ops.dspark.verify_greedy.default,
                                     padded_args()[:2] + (None,)),
    "verify_greedy_ragged": lambda: (torch.ops.dspark.verify_greedy_ragged.default,
                                     ragged_args()[:2] + (ragged_args()[3], 3)),
    "rejection_sample_token": lambda: (torch.ops.dspark.rejection_sample.default,
                                       padded_args() + (torch.tensor([4, 2, 0]), False)),
    "rejection_sample_block_bf16": lambda: (torch.ops.dspark.rejection_sample.default,
                                            padded_args(dtype=torch.bfloat16) + (None, True)),
    "rejection_sample_onehot": lambda: (torch.ops.dspark.rejection_sample.default,
                                        padded_args(onehot=True) + (None, False)),
    "rejection_sample_ragged": lambda: (
        torch.ops.dspark.rejection_sample_ragged.default,
        (*ragged_args()[:3], ragged_args()[3], 3, torch.ones(3), torch.arange(3),
         torch.zeros(3, dtype=torch.int64), True)),
}


@pytest.mark.parametrize("case", sorted(OPCHECK_CASES))
def test_opcheck(case):
    op, args = OPCHECK_CASES[case]()
    torch.library.opcheck(op, args)


def test_compile_fullgraph_matches_eager():
    t, x, d, temp, seed, offset = padded_args()

    def step(t, x, d, temp, seed, offset):
        res = dspark_ext.rejection_sample(t, x, d, temp, seed, offset, method="block")
        greedy = dspark_ext.verify_greedy(t, x)
        # Post-processing in the same graph, as an engine would do it.
        return res.out_tokens + 0, res.num_emitted * 2, greedy.accepted

    compiled = torch.compile(step, fullgraph=True, backend="inductor")
    got = compiled(t, x, d, temp, seed, offset)
    want = step(t, x, d, temp, seed, offset)
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_compile_ragged_fullgraph():
    t, x, d, cu = ragged_args()

    def step(t, x, d, cu):
        return dspark_ext.rejection_sample(t, x, d, 1.0, torch.arange(3), 0, cu_num_draft=cu,
                                           max_num_draft=3).out_tokens

    assert torch.equal(torch.compile(step, fullgraph=True)(t, x, d, cu), step(t, x, d, cu))


def test_build_info():
    info = dspark_ext.build_info()
    assert set(info) >= {"version", "cuda_enabled", "cuda_arch_list", "cpu_flags", "torch"}
    assert info["version"] == dspark_ext.__version__
