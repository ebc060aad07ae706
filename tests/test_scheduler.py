"""The prefix scheduler op against its plain-Python reference (design §6, issue 4): exact
agreement on random inputs (ties, zeros, jagged SPS curves, caps, budgets), the Appendix A
counterexample, the asynchronous scheduler, baselines, SPSProfile, bad input, opcheck and
torch.compile."""
import json
import random

import pytest
import torch

import dspark_ext
from dspark_ext import reference_schedule as ref
from dspark_ext import scheduler as sch

MODES = ("causal", "global", "capacity")


def sps_curve(kind, size, rng):
    if kind == "jagged":  # not unimodal: random steps up and down
        vals = [rng.uniform(0.2, 1.0) for _ in range(size)]
    elif kind == "cliffs":  # decaying with hardware-like cliffs
        vals = [1.0 / (1.0 + 0.02 * b) * (0.7 if (b // 5) % 2 else 1.0) for b in range(size)]
    elif kind == "decay":
        vals = [1.0 / (1.0 + 0.05 * max(b - 4, 0)) for b in range(size)]
    else:  # flat: every admission improves tau, ties in Theta when a = 0 would be admitted
        vals = [1.0] * size
    return vals


def random_case(rng):
    rows, k = rng.randint(1, 12), rng.randint(1, 8)
    if rng.random() < 0.5:  # quantised: ties in a, zeros, ones
        conf = [[rng.choice([0.0, 0.25, 0.5, 0.75, 1.0, 1.0]) for _ in range(k)]
                for _ in range(rows)]
    else:
        conf = [[rng.uniform(0.2, 1.0) for _ in range(k)] for _ in range(rows)]
    largest = rows * (k + 1)
    sps = sps_curve(rng.choice(["jagged", "cliffs", "decay", "flat"]),
                    largest + 1 + rng.randint(0, 3), rng)
    max_len = [rng.randint(0, k) for _ in range(rows)] if rng.random() < 0.3 else None
    budget = rng.randint(rows, largest) if rng.random() < 0.3 else None
    capacity = rng.randint(0, rows * k + 2)
    return conf, sps, max_len, budget, capacity


def run_ref(mode, conf, sps, max_len, budget, capacity):
    if mode == "causal":
        return ref.schedule_causal(conf, sps, max_len, budget)
    if mode == "global":
        return ref.schedule_global(conf, sps, max_len, budget)
    return ref.schedule_capacity(conf, sps, capacity, max_len, budget)


def run_op(mode, conf, sps, max_len, budget, capacity, device="cpu"):
    ml = None if max_len is None else torch.tensor(max_len, dtype=torch.int64, device=device)
    if mode == "capacity":
        return sch.schedule_capacity(conf, sps, capacity, ml, max_batch_tokens=budget)
    return sch.schedule_prefix(conf, sps, ml, max_batch_tokens=budget,
                               early_stop=(mode == "causal"))


def assert_same(res, expect, conf_ref_dtype=None):
    assert res.lengths.tolist() == expect.lengths
    assert int(res.num_admitted) == expect.num_admitted
    # Same double arithmetic in the same order: bit-identical.
    assert float(res.expected_tokens) == expect.expected_tokens
    assert float(res.throughput) == expect.throughput


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_random(mode, dtype):
    rng = random.Random(1234 + len(mode) + (dtype == torch.float64))
    for _ in range(150):
        conf, sps, max_len, budget, capacity = random_case(rng)
        c = torch.tensor(conf, dtype=dtype)
        s = torch.tensor(sps, dtype=rng.choice([torch.float32, torch.float64]))
        expect = run_ref(mode, c, s, max_len, budget, capacity)
        res = run_op(mode, c, s, max_len, budget, capacity)
        assert_same(res, expect)
        lengths = res.lengths
        k = c.shape[1]
        assert (lengths >= 0).all() and (lengths <= k).all()
        if max_len is not None:
            assert (lengths <= torch.tensor(max_len)).all()
        assert int(lengths.sum()) == int(res.num_admitted)
        if budget is not None:
            assert c.shape[0] + int(lengths.sum()) <= budget
        # Admitted drafts all have a > 0 (a valid prefix of candidates).
        a = torch.cumprod(c.double(), 1)
        for r in range(c.shape[0]):
            if lengths[r] > 0:
                assert a[r, lengths[r] - 1] > 0


@pytest.mark.parametrize("values", ["continuous", "quantised", "close"])
@pytest.mark.parametrize("mode", MODES)
def test_matches_reference_large(mode, values):
    """Large batches: the CPU kernel switches from the lazy heap to sorting the rest of the
    path (global search, large capacities, and a causal scan that goes far on a flat curve);
    'close' values tie in their high 32 bits but not in full (the sort's fix-up pass)."""
    rng = random.Random(f"{mode}-{values}")
    for rows, k in [(200, 16), (37, 9), (300, 3)]:
        if values == "continuous":
            conf = [[rng.uniform(0.5, 1.0) for _ in range(k)] for _ in range(rows)]
        elif values == "quantised":
            conf = [[rng.choice([0.0, 0.5, 0.75, 1.0, 1.0, 1.0]) for _ in range(k)]
                    for _ in range(rows)]
        else:
            conf = [[1.0 - rng.randint(0, 3) * 2.0 ** -40 for _ in range(k)] for _ in range(rows)]
        largest = rows * (k + 1)
        for kind in ("flat", "cliffs"):
            sps = sps_curve(kind, largest + 1, rng)
            c = torch.tensor(conf, dtype=torch.float64)
            cap = rng.randint(0, rows * k)
            expect = run_ref(mode, c, sps, None, None, cap)
            assert_same(run_op(mode, c, torch.tensor(sps, dtype=torch.float64), None, None, cap),
                        expect)


def test_tie_breaking_smaller_j_then_smaller_r():
    c = torch.ones(3, 2)  # every a = 1: path (r0,1) (r1,1) (r2,1) (r0,2) (r1,2) (r2,2)
    sps = [1.0] * 10
    for cap, expect in [(1, [1, 0, 0]), (2, [1, 1, 0]), (4, [2, 1, 1]), (5, [2, 2, 1]),
                        (9, [2, 2, 2])]:
        assert sch.schedule_capacity(c, sps, cap).lengths.tolist() == expect
    path = ref.admission_path(c)
    assert [(j, r) for _, j, r in path] == [(1, 0), (1, 1), (1, 2), (2, 0), (2, 1), (2, 2)]
    # Equal a across positions of one row: (r, j) still precedes (r, j + 1).
    c2 = torch.tensor([[0.5, 1.0, 1.0], [0.5, 1.0, 0.0]])
    assert sch.schedule_capacity(c2, [1.0] * 9, 3).lengths.tolist() == [2, 1]


def test_zero_confidence_is_not_a_candidate():
    # Flat SPS: admitting a = 0 would leave Theta unchanged (no improvement) -- and a = 0 is
    # not a candidate at all (Algorithm 1 line 4), so the path ends at the zeros.
    c = torch.tensor([[0.9, 0.0, 0.7], [0.0, 1.0, 1.0]])
    sps = [0.0, 1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0]  # rising: every candidate improves
    for mode in ("causal", "global"):
        res = run_op(mode, c, sps, None, None, 0)
        assert res.lengths.tolist() == [1, 0]
    assert sch.schedule_capacity(c, sps, 5).lengths.tolist() == [1, 0]


# ---------------------------------------------------------------------------------------------
# Appendix A (design §6), exactly
# ---------------------------------------------------------------------------------------------

APPENDIX_SPS = torch.tensor([0.0, 1.0, 0.5, 0.45], dtype=torch.float64)  # sps[B], B = 0..3


@pytest.mark.parametrize("c2", [0.9, 0.0])
def test_appendix_a_causal_returns_zero(c2):
    c = torch.tensor([[0.8, c2]], dtype=torch.float64)
    res = dspark_ext.schedule_causal(c, APPENDIX_SPS)
    assert res.lengths.tolist() == [0]
    assert float(res.throughput) == 1.0 and float(res.expected_tokens) == 1.0
    assert ref.schedule_causal(c, APPENDIX_SPS).lengths == [0]


@pytest.mark.parametrize("c2,expect", [(0.9, 2), (0.0, 0)])
def test_appendix_a_without_early_stop(c2, expect):
    c = torch.tensor([[0.8, c2]], dtype=torch.float64)
    res = dspark_ext.schedule_global(c, APPENDIX_SPS)
    assert res.lengths.tolist() == [expect]
    assert ref.schedule_global(c, APPENDIX_SPS).lengths == [expect]
    if expect == 2:
        assert float(res.throughput) == pytest.approx((1 + 0.8 + 0.72) * 0.45)


# ---------------------------------------------------------------------------------------------
# Asynchronous scheduler
# ---------------------------------------------------------------------------------------------


def test_async_scheduler_matches_reference():
    rng = random.Random(7)
    sps = sps_curve("cliffs", 6 * 5 + 1, rng)
    steps = [torch.tensor([[rng.uniform(0.3, 1.0) for _ in range(4)] for _ in range(6)])
             for _ in range(8)]
    for initial in (None, 3):
        expect = ref.schedule_async(steps, sps, initial_capacity=initial)
        sched = sch.AsyncScheduler(torch.tensor(sps, dtype=torch.float64),
                                     initial_capacity=initial)
        for conf, e in zip(steps, expect):
            assert_same(sched.step(conf), e)
    # The capacity of step t is the global search's admission count at step t - 2.
    caps = [ref.schedule_global(s, sps).num_admitted for s in steps]
    expect = ref.schedule_async(steps, sps)
    for t in range(2, len(steps)):
        assert expect[t].num_admitted == min(caps[t - 2], 6 * 4)


# ---------------------------------------------------------------------------------------------
# Baselines and the objective
# ---------------------------------------------------------------------------------------------


def test_baselines_and_objective():
    c = torch.tensor([[0.9, 0.9, 0.5, 0.9], [0.6, 0.5, 0.9, 0.9]])
    assert sch.fixed_length(2, 3).tolist() == [3, 3]
    assert sch.fixed_length(2, 3, max_len=torch.tensor([1, 4])).tolist() == [1, 3]
    # a = [0.9, 0.81, 0.405, 0.3645], [0.6, 0.3, 0.27, 0.243]
    assert sch.static_threshold(c, 0.5).tolist() == [2, 1]
    assert sch.static_threshold(c, 0.3).tolist() == [4, 2]
    sps = sps_curve("cliffs", 11, random.Random(0))
    res = sch.schedule_global(c, sps)
    obj = sch.expected_throughput(c, res.lengths, sps)
    assert obj["batch_tokens"] == 2 + int(res.num_admitted)
    assert obj["throughput"] == pytest.approx(float(res.throughput), rel=1e-12)
    # For each batch size the greedy path holds the largest tau, so the global search's Theta
    # bounds every fixed length's (all a > 0 here).
    for gamma in range(5):
        fixed = sch.expected_throughput(c, sch.fixed_length(2, gamma), sps)["throughput"]
        assert fixed <= float(res.throughput) + 1e-12


# ---------------------------------------------------------------------------------------------
# SPSProfile
# ---------------------------------------------------------------------------------------------


def test_sps_profile_measure_store_load(tmp_path):
    calls = []
    clock = [0.0]

    def forward(b):  # fake forward: 1 ms + 0.1 ms per token, on a fake clock
        calls.append(b)
        clock[0] += 1e-3 + 1e-4 * b

    prof = sch.SPSProfile.measure(forward, [8, 1, 4], warmup=2, repeats=3, sync=None,
                                  timer=lambda: clock[0])
    assert prof.batch_tokens == [1, 4, 8]
    assert calls.count(4) == 5  # warm-up + repeats
    assert prof(4) == pytest.approx(1.0 / 1.4e-3)
    assert prof(2) == pytest.approx(1.0 / (1.1e-3 + (1.4e-3 - 1.1e-3) / 3))  # time interpolated
    assert prof(16) == pytest.approx(1.0 / (1.8e-3 * 2))  # time proportional to B beyond
    table = prof.table(10)
    assert table.shape == (11,) and table.dtype == torch.float64
    assert float(table[4]) == pytest.approx(prof(4)) and float(table[0]) == float(table[1])
    path = tmp_path / "sps.json"
    prof.save(str(path))
    back = sch.SPSProfile.load(str(path))
    assert back.batch_tokens == prof.batch_tokens
    assert back.steps_per_second == prof.steps_per_second
    json.loads(path.read_text())
    jag = sch.SPSProfile([1, 2, 3, 4], [1.0, 0.5, 0.8, 0.4]).monotone()
    assert jag.steps_per_second == [1.0, 0.5, 0.5, 0.4]
    # The scheduler takes a profile directly.
    c = torch.full((2, 3), 0.9)
    assert torch.equal(sch.schedule_causal(c, prof).lengths,
                       sch.schedule_causal(c, prof.table(8)).lengths)
    with pytest.raises(ValueError, match="increasing"):
        sch.SPSProfile([2, 1], [1.0, 1.0])


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------

GOOD_SPS = torch.ones(16, dtype=torch.float64)


@pytest.mark.parametrize("case,match", [
    ("nan", r"confidence\[0, 1\] = nan"),
    ("above_one", r"confidence\[1, 0\] = 1.5 must be a probability"),
    ("negative", r"confidence\[0, 0\] = -0.1"),
    ("r_zero", "R = 0"),
    ("k_zero", "K >= 1"),
    ("rank", "2-D"),
    ("int_conf", "float32 or float64"),
    ("short_sps", r"sps has 6 entries but the largest possible batch is R\*\(K\+1\) = 6"),
    ("sps_nan", r"sps\[3\] = nan"),
    ("sps_rank", "sps must be 1-D"),
    ("max_len_range", r"max_len\[1\] = 4 must lie in \[0, K\]"),
    ("max_len_shape", "max_len must be 1-D"),
    ("max_len_dtype", "max_len must be int64"),
    ("budget", "max_batch_tokens = 1 must be >= R = 2"),
    ("capacity_negative", "capacity = -1 must be >= 0"),
    ("capacity_shape", "capacity must hold one value"),
])
def test_bad_input(case, match):
    c = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    sps, kw = GOOD_SPS, {}
    op = torch.ops.dspark.schedule_prefix
    if case == "nan":
        c[0, 1] = float("nan")
    elif case == "above_one":
        c[1, 0] = 1.5
    elif case == "negative":
        c[0, 0] = -0.1
    elif case == "r_zero":
        c = torch.empty(0, 2)
    elif case == "k_zero":
        c = torch.empty(2, 0)
    elif case == "rank":
        c = torch.ones(4)
    elif case == "int_conf":
        c = torch.ones(2, 2, dtype=torch.int64)
    elif case == "short_sps":
        sps = torch.ones(6)
    elif case == "sps_nan":
        sps = GOOD_SPS.clone()
        sps[3] = float("nan")
    elif case == "sps_rank":
        sps = torch.ones(4, 4)
    elif case == "max_len_range":
        kw["max_len"] = torch.tensor([1, 4])
    elif case == "max_len_shape":
        kw["max_len"] = torch.tensor([1])
    elif case == "max_len_dtype":
        kw["max_len"] = torch.tensor([1, 1], dtype=torch.int32)
    elif case == "budget":
        kw["max_batch_tokens"] = 1
    elif case == "capacity_negative":
        kw["capacity"] = torch.tensor(-1)
    elif case == "capacity_shape":
        kw["capacity"] = torch.tensor([1, 2])
    with pytest.raises(RuntimeError, match=match):
        op(c, sps, **kw)


def test_sps_table_length_follows_the_budget():
    c = torch.full((2, 4), 0.9)  # largest batch 10
    with pytest.raises(RuntimeError, match="needs at least 11"):
        sch.schedule_causal(c, torch.ones(10))
    # With a budget of 5 tokens the table only needs B = 0..5.
    res = sch.schedule_causal(c, torch.ones(6), max_batch_tokens=5)
    assert int(res.num_admitted) == 3


# ---------------------------------------------------------------------------------------------
# Torch-op integration
# ---------------------------------------------------------------------------------------------

OPCHECK = {
    "causal": lambda: (torch.rand(5, 4), torch.rand(26).double(), None, None, None, True),
    "global_f64": lambda: (torch.rand(5, 4).double(), torch.rand(26), torch.tensor([4, 0, 1, 2, 3]),
                           None, 12, False),
    "capacity": lambda: (torch.rand(5, 4), torch.rand(26), None, torch.tensor(3), None, True),
}


@pytest.mark.parametrize("case", sorted(OPCHECK))
def test_opcheck(case):
    torch.manual_seed(0)
    torch.library.opcheck(torch.ops.dspark.schedule_prefix.default, OPCHECK[case]())


def test_compile_fullgraph_matches_eager():
    torch.manual_seed(0)
    c = torch.rand(6, 5)
    sps = torch.linspace(1.0, 0.2, 6 * 6 + 1, dtype=torch.float64)

    def step(c, sps):
        res = dspark_ext.schedule_causal(c, sps)
        glob = dspark_ext.schedule_global(c, sps)
        capped = dspark_ext.schedule_capacity(c, sps, glob.num_admitted)
        return res.lengths + 0, capped.lengths, res.throughput * 2

    compiled = torch.compile(step, fullgraph=True, backend="eager")
    for a, b in zip(compiled(c, sps), step(c, sps)):
        assert torch.equal(a, b)
