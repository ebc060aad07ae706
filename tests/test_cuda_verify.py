"""CUDA verification kernels against the CPU kernels (csrc/cuda vs csrc/cpu).

Both executors run the same per-request algorithm (core/verify_row.h) with bit-identical
per-element math and the same Philox streams, so for the same inputs they must return the same
tokens, flags and counts. Only the order of float additions in row sums differs, which moves
a decision only on an exact near-tie; the fixed seeds below avoid those.

Every test needs a CUDA device and a CUDA build (marked `cuda`; conftest.py skips them
otherwise). Outputs start poisoned (conftest.py), so padding a kernel forgets to write shows.
Budget: well under a minute on an H200; the CPU reference dominates at V = 151,936.
"""
import itertools

import pytest
import torch

import dspark_ext  # noqa: F401  (loads the op library)

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

ops = torch.ops.dspark

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
VOCABS = [1, 7, 4096, 32000, 151936]
DRAFTS = [0, 1, 7, 16]


# ----------------------------------------------------------------------------------------
# Inputs. Logits tensors are kept as their backing tensor plus a flag: with `misaligned`
# the backing tensor has V + 1 columns and the op sees [..., 1:], so row starts are not
# 16-byte aligned, and the CPU and CUDA copies get the same view of the same values.
# ----------------------------------------------------------------------------------------
class Logits:
    def __init__(self, full, misaligned):
        self.full, self.misaligned = full, misaligned

    def on(self, device):
        t = self.full.to(device)
        return t[..., 1:] if self.misaligned else t


def _logits(shape, dtype, misaligned, gen, base=None, noise=3.0):
    *lead, v = shape
    vals = torch.randn(*lead, v, generator=gen) * noise
    if base is not None:
        vals = base + vals
    if misaligned:
        full = torch.zeros(*lead, v + 1)
        full[..., 1:] = vals
        vals = full
    return Logits(vals.to(dtype), misaligned)


def _batch_for(vocab):
    return 3 if vocab >= 100_000 else 6


def _as_probs(draft, temperature, dtype):
    """Draft logits -> draft probabilities softmax(d / T_r) (T = 1 for greedy rows), in the
    same (possibly misaligned) layout, with a NaN and a negative entry (q = 0) per row."""
    vals = draft.full[..., 1:] if draft.misaligned else draft.full
    t = torch.where(temperature > 0, temperature, torch.ones_like(temperature))
    q = torch.softmax(vals.double() / t.double().view(-1, *[1] * (vals.dim() - 1)), -1)
    if q.shape[-1] > 3:
        q[..., 1] = float("nan")
        q[..., 2] = -0.5
    full = torch.zeros_like(draft.full, dtype=torch.float64)
    if draft.misaligned:
        full[..., 1:] = q
    else:
        full = q
    return Logits(full.to(dtype), draft.misaligned)


class Case:
    """A padded-layout problem; `ragged()` derives the equivalent ragged one. ``onehot``: no
    draft rows; ``probs``: the draft rows are passed as draft_probs."""

    def __init__(self, vocab, k, dtype, temps, onehot, misaligned, seed, full_drafts=False,
                 probs=False):
        g = torch.Generator().manual_seed(seed)
        b = _batch_for(vocab)
        self.k, self.vocab, self.dtype, self.misaligned = k, vocab, dtype, misaligned
        self.target = _logits((b, k + 1, vocab), dtype, misaligned, g)
        t = self.target.on("cpu").float()
        # Drafts close to the target (acceptances happen) but not equal (rejections too).
        self.draft = None if onehot else _logits((b, k, vocab), dtype, misaligned, g,
                                                 base=t[:, :k], noise=1.0)
        argmax = t[:, :k].argmax(-1)
        rand = torch.randint(0, vocab, (b, k), generator=g)
        self.tokens = torch.where(torch.rand(b, k, generator=g) < 0.7, argmax, rand)
        self.num_draft = None if full_drafts else torch.randint(0, k + 1, (b,), generator=g)
        if temps == "greedy":
            self.temperature = torch.zeros(b)
        else:
            self.temperature = torch.rand(b, generator=g) * 1.5 + 0.3
            self.temperature[::3] = 0.0
        self.seed = torch.randint(0, 2**62, (b,), generator=g)
        self.offset = torch.randint(0, 2**40, (b,), generator=g)
        self.probs = probs and self.draft is not None
        if self.probs:
            self.draft = _as_probs(self.draft, self.temperature, dtype)

    def lengths(self):
        b = self.tokens.shape[0]
        return self.num_draft if self.num_draft is not None else torch.full((b,), self.k)

    # --- padded ---
    def padded_args(self, device, sample, block=False):
        nd = None if self.num_draft is None else self.num_draft.to(device)
        if not sample:
            return (self.target.on(device), self.tokens.to(device), nd)
        d_logits, d_probs = self._draft_args(self.draft, device)
        return (self.target.on(device), self.tokens.to(device), d_logits,
                self.temperature.to(device), self.seed.to(device), self.offset.to(device), nd,
                block, d_probs)

    def _draft_args(self, rows, device):
        """The op's (draft_logits, draft_probs) arguments for draft rows ``rows``."""
        rows = None if rows is None else rows.on(device)
        return (None, rows) if self.probs else (rows, None)

    # --- ragged ---
    def _ragged_parts(self):
        lens = self.lengths()
        b = lens.shape[0]
        cu = torch.zeros(b + 1, dtype=torch.long)
        cu[1:] = torch.cumsum(lens, 0)
        tgt = self.target.full
        trows = torch.cat([tgt[i, : lens[i] + 1] for i in range(b)])
        toks = torch.cat([self.tokens[i, : lens[i]] for i in range(b)])
        drows = None
        if self.draft is not None:
            drows = torch.cat([self.draft.full[i, : lens[i]] for i in range(b)])
        return cu, Logits(trows, self.misaligned), toks, (
            None if drows is None else Logits(drows, self.misaligned))

    def ragged_args(self, device, sample, block=False):
        cu, trows, toks, drows = self._ragged_parts()
        if not sample:
            return (trows.on(device), toks.to(device), cu.to(device), self.k)
        d_logits, d_probs = self._draft_args(drows, device)
        return (trows.on(device), toks.to(device), d_logits, cu.to(device), self.k,
                self.temperature.to(device), self.seed.to(device), self.offset.to(device), block,
                d_probs)


def _run(op, args):
    return tuple(t.cpu() for t in op(*args))


def _assert_same(ref, got, what):
    names = ("accepted", "out_tokens", "num_emitted", "accept_flags")
    for name, r, g in zip(names, ref, got):
        assert r.dtype == g.dtype and r.shape == g.shape, f"{what}: {name} shape/dtype differ"
        if not torch.equal(r, g):
            rows = (r != g).reshape(r.shape[0], -1).any(-1).nonzero().flatten().tolist()
            raise AssertionError(f"{what}: {name} differs in rows {rows}\nCPU  {r.tolist()}\n"
                                 f"CUDA {g.tolist()}")


# ----------------------------------------------------------------------------------------
# CUDA == CPU, token for token.
# ----------------------------------------------------------------------------------------
_GRID = list(itertools.product(DTYPES, VOCABS, DRAFTS))


@pytest.mark.parametrize("dtype,vocab,k", _GRID,
                         ids=[f"{str(d).split('.')[-1]}-V{v}-K{k}" for d, v, k in _GRID])
def test_matches_cpu(dtype, vocab, k):
    case_index = _GRID.index((dtype, vocab, k))
    variants = list(itertools.product(["padded", "ragged"], [False, True], ["greedy", "mixed"]))
    for i, (layout, block, temps) in enumerate(variants):
        # The draft form (logits, probabilities, one-hot) and misaligned views rotate over
        # the variants, so across the grid every (layout, method, temperatures) meets all six
        # combinations.
        rot = (i + case_index) % 6
        form, misaligned = ("logits", "probs", "onehot")[rot % 3], rot >= 3
        seed = 1000 * case_index + i
        c = Case(vocab, k, dtype, temps, form == "onehot", misaligned, seed,
                 full_drafts=(layout == "padded" and i % 3 == 0), probs=form == "probs")
        what = (f"{layout} {'block' if block else 'token'} {temps} draft={form} "
                f"misaligned={misaligned} seed={seed}")
        if layout == "padded":
            op = ops.rejection_sample
            ref = _run(op, c.padded_args("cpu", True, block))
            got = _run(op, c.padded_args("cuda", True, block))
        else:
            op = ops.rejection_sample_ragged
            ref = _run(op, c.ragged_args("cpu", True, block))
            got = _run(op, c.ragged_args("cuda", True, block))
        _assert_same(ref, got, "rejection_sample " + what)
        if not block and temps == "greedy":  # the greedy ops on the same inputs
            if layout == "padded":
                ref = _run(ops.verify_greedy, c.padded_args("cpu", False))
                got = _run(ops.verify_greedy, c.padded_args("cuda", False))
            else:
                ref = _run(ops.verify_greedy_ragged, c.ragged_args("cpu", False))
                got = _run(ops.verify_greedy_ragged, c.ragged_args("cuda", False))
            _assert_same(ref, got, "verify_greedy " + what)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).split(".")[-1])
def test_masked_logits_match_cpu(dtype):
    """-inf / NaN / +inf logits (masked), fully masked rows, ties (lowest index wins)."""
    g = torch.Generator().manual_seed(7)
    b, k, v = 4, 3, 1031
    target = (torch.randn(b, k + 1, v, generator=g) * 2).round()  # many exact ties
    target[0, :, ::5] = float("-inf")
    target[1, :, 3] = float("nan")
    target[2, 1, :] = float("-inf")  # a fully masked row
    target[3, :, 17] = float("inf")
    draft = target[:, :k] + torch.randn(b, k, v, generator=g)
    tokens = target[:, :k].nan_to_num(-1e9, -1e9, -1e9).argmax(-1)
    temp = torch.tensor([0.0, 1.0, 0.7, 1.3])
    seed = torch.arange(b) * 12345
    off = torch.arange(b)
    # Draft probabilities with NaN / negative / +inf / subnormal entries (q = 0).
    probs = torch.softmax(draft, -1)
    probs[0, :, 2], probs[1, :, 4], probs[2, :, 6], probs[3, :, 8] = (
        float("nan"), -0.1, float("inf"), 1e-40)
    for block, as_probs in itertools.product((False, True), (False, True)):
        d_logits, d_probs = (None, probs.to(dtype)) if as_probs else (draft.to(dtype), None)
        args = (target.to(dtype), tokens, d_logits, temp, seed, off, None, block, d_probs)
        ref = _run(ops.rejection_sample, args)
        got = _run(ops.rejection_sample, tuple(
            a.cuda() if isinstance(a, torch.Tensor) else a for a in args))
        _assert_same(ref, got, f"masked block={block} draft_probs={as_probs}")
    ref = _run(ops.verify_greedy, (target.to(dtype), tokens, None))
    got = _run(ops.verify_greedy, (target.to(dtype).cuda(), tokens.cuda(), None))
    _assert_same(ref, got, "masked greedy")


def test_empty_batch_and_k0():
    for dtype in DTYPES:
        t = torch.randn(0, 3, 5, dtype=dtype, device="cuda")
        tok = torch.zeros(0, 2, dtype=torch.long, device="cuda")
        z = torch.zeros(0, device="cuda")
        zl = torch.zeros(0, dtype=torch.long, device="cuda")
        out = ops.rejection_sample(t, tok, None, z, zl, zl, None, False)
        assert [o.shape[0] for o in out] == [0, 0, 0, 0]
        out = ops.verify_greedy_ragged(torch.randn(0, 5, dtype=dtype, device="cuda"), zl,
                                       torch.zeros(1, dtype=torch.long, device="cuda"), 4)
        assert out[1].shape == (0, 5)
    # K = 0: only the bonus token.
    t = torch.randn(3, 1, 9, device="cuda")
    acc, toks, n, flags = ops.verify_greedy(t, torch.zeros(3, 0, dtype=torch.long,
                                                           device="cuda"), None)
    assert acc.tolist() == [0, 0, 0] and n.tolist() == [1, 1, 1] and flags.shape == (3, 0)
    assert toks[:, 0].tolist() == t[:, 0].argmax(-1).tolist()
    torch.cuda.synchronize()


# ----------------------------------------------------------------------------------------
# Invalid values: not checked on the host for CUDA (that would synchronise); the row is
# left empty and nothing is read out of bounds.
# ----------------------------------------------------------------------------------------
def _assert_empty(out, rows):
    acc, toks, n, _ = (t.cpu() for t in out)
    for r in rows:
        assert acc[r] == 0 and n[r] == 0, f"row {r} should be empty"
        assert (toks[r] == -1).all(), f"row {r} should emit nothing"


def test_invalid_values_give_empty_rows():
    g = torch.Generator().manual_seed(3)
    b, k, v = 5, 4, 1000
    target = torch.randn(b, k + 1, v, generator=g).cuda()
    draft = torch.randn(b, k, v, generator=g).cuda()
    tokens = torch.randint(0, v, (b, k), generator=g)
    tokens[1, 2] = v + 3  # out of range
    tokens[2, 0] = -5  # out of range
    tokens[4, 3] = 10**12  # beyond num_draft[4] = 3: never read, fine
    temp = torch.tensor([1.0, 1.0, 0.0, -0.5, 1.0])  # row 3: negative temperature
    num_draft = torch.tensor([4, 4, 2, 4, 3])
    seed, off = torch.arange(b), torch.zeros(b, dtype=torch.long)
    for block in (False, True):
        out = ops.rejection_sample(target, tokens.cuda(), draft, temp.cuda(), seed.cuda(),
                                   off.cuda(), num_draft.cuda(), block)
        _assert_empty(out, [1, 2, 3])
        assert out[2][0].item() >= 1 and out[2][4].item() >= 1
    temp[3] = float("nan")
    out = ops.rejection_sample(target, tokens.cuda(), None, temp.cuda(), seed.cuda(),
                               off.cuda(), num_draft.cuda(), False)
    _assert_empty(out, [1, 2, 3])
    # num_draft outside [0, K]
    bad_nd = torch.tensor([5, -1, 0, 1, 4]).cuda()
    out = ops.verify_greedy(target, tokens.clamp(0, v - 1).cuda(), bad_nd)
    _assert_empty(out, [0, 1])
    assert out[2][2:].min().item() >= 1

    # Ragged offsets: each row is judged on its own (lo >= 0, hi >= lo, hi <= T,
    # hi - lo <= max_num_draft).
    t_tokens = 6
    rows = torch.randn(t_tokens + 3, v, generator=g).cuda()
    toks = torch.randint(0, v, (t_tokens,), generator=g).cuda()
    for cu, bad in (([0, 3, 1, 6], [1, 2]), ([0, 2, 4, 9], [2]), ([-1, 2, 4, 6], [0]),
                    ([0, 2, 2, 7], [2])):
        cu_t = torch.tensor(cu).cuda()
        out = ops.verify_greedy_ragged(rows, toks, cu_t, 3)
        _assert_empty(out, bad)
        good = [r for r in range(3) if r not in bad]
        assert all(out[2][r].item() >= 1 for r in good)
        out = ops.rejection_sample_ragged(rows, toks, None, cu_t, 3, torch.ones(3).cuda(),
                                          torch.zeros(3, dtype=torch.long).cuda(),
                                          torch.zeros(3, dtype=torch.long).cuda(), True)
        _assert_empty(out, bad)
    torch.cuda.synchronize()  # an out-of-bounds access would surface here


# ----------------------------------------------------------------------------------------
# Serving-stack integration: CUDA graphs, opcheck, streams/devices.
# ----------------------------------------------------------------------------------------
def test_cuda_graph_capture_rejection_sample():
    c = Case(4096, 7, torch.bfloat16, "mixed", False, False, seed=42)
    args = list(c.padded_args("cuda", True, block=False))
    offset = args[5]
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(2):
            ops.rejection_sample(*args)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = ops.rejection_sample(*args)
    for step in range(3):
        offset.add_(1)  # callers advance the offset every step
        graph.replay()
        torch.cuda.synchronize()
        eager = ops.rejection_sample(*args)
        _assert_same(tuple(t.cpu() for t in eager), tuple(t.cpu() for t in static_out),
                     f"graph replay {step}")
        cpu_args = [a.cpu() if isinstance(a, torch.Tensor) else a for a in args]
        _assert_same(_run(ops.rejection_sample, cpu_args), tuple(t.cpu() for t in static_out),
                     f"graph vs CPU {step}")


def test_runs_on_current_stream_and_device_of_inputs():
    c = Case(4096, 3, torch.float16, "mixed", False, False, seed=5)
    ref = _run(ops.rejection_sample, c.padded_args("cpu", True, True))
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = ops.rejection_sample(*c.padded_args("cuda", True, True))
    s.synchronize()
    _assert_same(ref, tuple(t.cpu() for t in out), "side stream")
    if torch.cuda.device_count() > 1:
        dev = torch.device("cuda", 1)
        out = ops.rejection_sample(*c.padded_args(dev, True, True))
        assert all(t.device == dev for t in out)
        _assert_same(ref, tuple(t.cpu() for t in out), "second device")


def test_opcheck_cuda():
    c = Case(257, 4, torch.bfloat16, "mixed", False, False, seed=9)
    torch.library.opcheck(ops.rejection_sample.default, c.padded_args("cuda", True, True))
    torch.library.opcheck(ops.rejection_sample_ragged.default, c.ragged_args("cuda", True))
    p = Case(257, 4, torch.float32, "mixed", False, True, seed=10, probs=True)
    torch.library.opcheck(ops.rejection_sample.default, p.padded_args("cuda", True, False))
    torch.library.opcheck(ops.rejection_sample_ragged.default, p.ragged_args("cuda", True, True))
    torch.library.opcheck(ops.verify_greedy.default, c.padded_args("cuda", False))
    torch.library.opcheck(ops.verify_greedy_ragged.default, c.ragged_args("cuda", False))


def test_device_mismatch_is_an_error():
    t = torch.randn(2, 3, 11, device="cuda")
    with pytest.raises(RuntimeError, match="draft_tokens"):
        ops.verify_greedy(t, torch.zeros(2, 2, dtype=torch.long), None)
    with pytest.raises(RuntimeError, match="target_logits"):
        ops.verify_greedy(t.cpu(), torch.zeros(2, 2, dtype=torch.long, device="cuda"), None)
    x = torch.zeros(2, 2, dtype=torch.long, device="cuda")
    ones, zeros = torch.ones(2, device="cuda"), torch.zeros(2, dtype=torch.long, device="cuda")
    with pytest.raises(RuntimeError, match="draft_probs is on cpu"):
        ops.rejection_sample(t, x, None, ones, zeros, zeros, None, False,
                             torch.full((2, 2, 11), 1 / 11))
