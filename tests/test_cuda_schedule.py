"""The scheduler op on CUDA: bit-identical to the Python reference and the CPU op (design §6),
shared- and global-memory sort buffers, sanitised values, Appendix A, opcheck."""
import random

import pytest
import torch

import dspark_ext
from dspark_ext import reference_schedule as ref
from test_scheduler import MODES, assert_same, random_case, run_op, run_ref, sps_curve

pytestmark = pytest.mark.cuda
DEV = "cuda"


@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_random(mode):
    rng = random.Random(99 + len(mode))
    for _ in range(60):
        conf, sps, max_len, budget, capacity = random_case(rng)
        c = torch.tensor(conf, dtype=rng.choice([torch.float32, torch.float64]))
        s = torch.tensor(sps, dtype=rng.choice([torch.float32, torch.float64]))
        expect = run_ref(mode, c, s, max_len, budget, capacity)
        res = run_op(mode, c.to(DEV), s.to(DEV), max_len, budget, capacity, device=DEV)
        assert res.lengths.device.type == "cuda"
        assert_same(res, expect)


@pytest.mark.parametrize("rows,k", [(256, 16), (512, 16), (1000, 7)])  # shared, global, odd
@pytest.mark.parametrize("mode", MODES)
def test_matches_cpu_large(rows, k, mode):
    g = torch.Generator().manual_seed(rows + k)
    conf = (torch.rand(rows, 1, generator=g) * 0.4 + 0.55) * (0.9 + 0.1 * torch.rand(rows, k, generator=g))
    conf[::7, 3] = 1.0  # some exact ties
    for kind in ("cliffs", "flat"):
        sps = torch.tensor(sps_curve(kind, rows * (k + 1) + 1, random.Random(0)),
                           dtype=torch.float64)
        cap = rows * k // 3
        cpu = run_op(mode, conf, sps, None, None, cap)
        gpu = run_op(mode, conf.to(DEV), sps.to(DEV), None, None, cap, device=DEV)
        for a, b in zip(cpu, gpu):
            assert torch.equal(a, b.cpu()), (mode, kind)


def test_sanitised_values():
    """No host-side value checks on CUDA: NaN reads as 0, values clamp to [0, 1], max_len
    clamps to [0, K], a negative capacity reads as 0."""
    c = torch.tensor([[0.9, float("nan"), 0.9], [1.5, 0.8, -0.2]])
    clean = torch.tensor([[0.9, 0.0, 0.9], [1.0, 0.8, 0.0]])
    sps = torch.ones(9, dtype=torch.float64)
    for early in (True, False):
        got = dspark_ext.schedule_prefix(c.to(DEV), sps.to(DEV), early_stop=early)
        want = dspark_ext.schedule_prefix(clean, sps, early_stop=early)
        assert torch.equal(got.lengths.cpu(), want.lengths)
    got = dspark_ext.schedule_prefix(clean.to(DEV), sps.to(DEV),
                                     torch.tensor([9, -1], device=DEV), early_stop=False)
    assert got.lengths.tolist() == [1, 0]
    got = dspark_ext.schedule_capacity(clean.to(DEV), sps.to(DEV),
                                       torch.tensor(-3, device=DEV))
    assert got.lengths.tolist() == [0, 0]


def test_appendix_a_on_cuda():
    sps = torch.tensor([0.0, 1.0, 0.5, 0.45], dtype=torch.float64, device=DEV)
    for c2, glob in ((0.9, 2), (0.0, 0)):
        c = torch.tensor([[0.8, c2]], dtype=torch.float64, device=DEV)
        assert dspark_ext.schedule_causal(c, sps).lengths.tolist() == [0]
        assert dspark_ext.schedule_global(c, sps).lengths.tolist() == [glob]


def test_opcheck_and_shape_errors_cuda():
    c = torch.rand(5, 4, device=DEV)
    sps = torch.rand(26, device=DEV)
    torch.library.opcheck(torch.ops.dspark.schedule_prefix.default,
                          (c, sps, None, torch.tensor(3, device=DEV), None, True))
    with pytest.raises(RuntimeError, match="sps is on cpu"):
        torch.ops.dspark.schedule_prefix(c, sps.cpu())
    with pytest.raises(RuntimeError, match="needs at least 26"):
        torch.ops.dspark.schedule_prefix(c, sps[:20])
