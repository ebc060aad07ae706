"""The ops are proper torch ops: opcheck (schema, fake kernels, dispatch) and
torch.compile(fullgraph=True) (design §9)."""
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
    # Draft probabilities instead of draft logits (the last, optional argument).
    "rejection_sample_probs_token": lambda: (
        torch.ops.dspark.rejection_sample.default,
        with_probs(padded_args(), 2) + (torch.tensor([4, 2, 0]), False, probs_of_args()[0])),
    "rejection_sample_probs_block_fp16": lambda: (
        torch.ops.dspark.rejection_sample.default,
        with_probs(padded_args(dtype=torch.float16), 2) + (None, True,
                                                           probs_of_args(torch.float16)[0])),
    "rejection_sample_ragged_probs": lambda: (
        torch.ops.dspark.rejection_sample_ragged.default,
        (*ragged_args()[:2], None, ragged_args()[3], 3, torch.ones(3), torch.arange(3),
         torch.zeros(3, dtype=torch.int64), True, torch.softmax(ragged_args()[2], -1))),
    # Engine dtypes and the opt-in inputs (issue 20): int32 indices, vLLM's inclusive
    # offsets [B], float64 logits, a caller-given draft_lse.
    "verify_greedy_ragged_int32_inclusive": lambda: (
        torch.ops.dspark.verify_greedy_ragged.default,
        (ragged_args()[0], ragged_args()[1].int(), ragged_args()[3][1:].int(), 3, True)),
    "rejection_sample_int32_float64": lambda: (
        torch.ops.dspark.rejection_sample.default,
        (padded_args()[0].double(), padded_args()[1].int(), padded_args()[2].double(),
         padded_args()[3], padded_args()[4].int(), padded_args()[5].int(),
         torch.tensor([4, 2, 0], dtype=torch.int32), False)),
    "rejection_sample_draft_lse": lambda: (
        torch.ops.dspark.rejection_sample.default,
        padded_args() + (None, True, None, lse_of(padded_args()[2], padded_args()[3]))),
    "rejection_sample_ragged_inclusive_lse": lambda: (
        torch.ops.dspark.rejection_sample_ragged.default,
        (*ragged_args()[:3], ragged_args()[3][1:].int(), 3, torch.ones(3), torch.arange(3),
         torch.zeros(3, dtype=torch.int32), False, None,
         torch.logsumexp(ragged_args()[2], -1), None, True)),
    "rejection_sample_sparse_rows": lambda: (
        torch.ops.dspark.rejection_sample.default,
        (padded_args()[0], padded_args()[1], padded_args()[2][..., :6].contiguous(),
         *padded_args()[3:], None, False, None, None,
         torch.sort(padded_args()[1][..., None] + torch.arange(6), -1).values % 37)),
    "markov_sample_topk": lambda: (torch.ops.dspark.markov_sample_topk.default,
                                   markov_args() + (5,)),
}


def markov_args():
    """A small vanilla-head markov_sample call (op argument order)."""
    g = torch.Generator().manual_seed(2)
    v, r = 37, 4
    return (torch.randn(3, 4, v, generator=g), torch.tensor([0, 5, 36]),
            torch.randn(v, r, generator=g), torch.randn(v, r, generator=g), torch.ones(3),
            torch.arange(3), torch.zeros(3, dtype=torch.int64), "vanilla", None, None, None,
            None, None, None)


def lse_of(draft_logits, temp):
    """float32 logsumexp(d / T) per draft row (T = 0 rows: at scale 1, never read)."""
    t = torch.where(temp > 0, temp, torch.ones_like(temp)).view(-1, 1, 1)
    return torch.logsumexp(draft_logits / t, -1)


def probs_of_args(dtype=torch.float32):
    """(draft probabilities [B, K, V] of padded_args' draft logits,)."""
    return (torch.softmax(padded_args()[2], -1).to(dtype),)


def with_probs(args, index):
    """``args`` with the draft logits at ``index`` replaced by None (probabilities instead)."""
    return args[:index] + (None,) + args[index + 1:]


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


@pytest.mark.parametrize("draft", ["draft_logits", "draft_probs"])
def test_compile_ragged_fullgraph(draft):
    t, x, d, cu = ragged_args()
    if draft == "draft_probs":
        d = torch.softmax(d, -1)

    def step(t, x, d, cu):
        kw = {"draft_probs": d} if draft == "draft_probs" else {}
        return dspark_ext.rejection_sample(t, x, None if kw else d, 1.0, torch.arange(3), 0,
                                           cu_num_draft=cu, max_num_draft=3, **kw).out_tokens

    assert torch.equal(torch.compile(step, fullgraph=True)(t, x, d, cu), step(t, x, d, cu))


def test_compile_fullgraph_engine_inputs():
    """int32 ids, inclusive offsets and draft_lse trace and run under fullgraph."""
    t, x, d, cu = ragged_args()
    lse = torch.logsumexp(d, -1)

    def step(t, x, d, cu, lse):
        return dspark_ext.rejection_sample(t, x, d, 1.0, torch.arange(3), 0, cu_num_draft=cu,
                                           max_num_draft=3, cu_inclusive=True,
                                           draft_lse=lse).out_tokens

    args = (t, x.int(), d, cu[1:].int(), lse)
    assert torch.equal(torch.compile(step, fullgraph=True)(*args), step(*args))


def test_compile_fullgraph_draft_probs_padded():
    t, x, d, temp, seed, offset = padded_args()
    q = torch.softmax(d, -1)

    def step(t, x, q, temp, seed, offset):
        return dspark_ext.rejection_sample(t, x, None, temp, seed, offset, method="token",
                                           draft_probs=q).out_tokens * 1

    got = torch.compile(step, fullgraph=True)(t, x, q, temp, seed, offset)
    assert torch.equal(got, step(t, x, q, temp, seed, offset))


def test_build_info():
    info = dspark_ext.build_info()
    assert set(info) >= {"version", "cuda_enabled", "cuda_arch_list", "cpu_flags", "torch"}
    assert info["version"] == dspark_ext.__version__
