"""Unit tests of the decoder's pieces, on hand-built inputs (issue 21, mutation testing):
length policies, per-round statistics, input normalisation, the batch state and the
verification step. No model runs here; each check is a known value or a direct
recomputation."""
import pytest
import torch

from dspark_ext import scheduler as sched
from dspark_ext.decoding import inputs as inp
from dspark_ext.decoding.batch import BatchState
from dspark_ext.decoding.policies import FixedLength, Scheduled, StaticThreshold
from dspark_ext.decoding.stats import GenerationStats, RoundStats
from dspark_ext.decoding.verification import (METHODS, first_token, resolve_method,
                                              verify_cap, verify_drafts)
from dspark_ext.decoding.warp import truncate_logits
from dspark_ext.drafters.base import DraftBlock
from dspark_ext.ops import rejection_sample, verify_greedy
from dspark_ext.ops.sampling import MAX_OFFSET, sample_target


def _block(z, k=None, num_valid=None):
    z = torch.as_tensor(z, dtype=torch.float32)
    k = z.shape[1] if k is None else k
    return DraftBlock(draft_tokens=torch.zeros(z.shape[0], k, dtype=torch.int64),
                      confidence_logits=z, num_valid=num_valid)


# ------------------------------------------------------------------ policies

def test_fixed_length():
    cap = torch.tensor([5, 1, 3])
    blk = _block(torch.zeros(3, 5))
    assert torch.equal(FixedLength()(blk, cap), cap)
    assert FixedLength(2)(blk, cap).tolist() == [2, 1, 2]
    assert FixedLength(0)(blk, cap).tolist() == [0, 0, 0]
    assert FixedLength().gamma is None and FixedLength(4).gamma == 4
    FixedLength(3).reset()
    with pytest.raises(ValueError, match="gamma must be >= 0, got -1"):
        FixedLength(-1)


def test_static_threshold_raw_and_calibrated():
    z = torch.tensor([[2.0, 1.0, 1.0, 3.0], [-1.0, 4.0, 4.0, 4.0]])
    cap = torch.tensor([4, 4])
    c = torch.sigmoid(z.double()).cumprod(1)  # a: 0.88 0.64 0.32 ... / 0.27 ...
    pol = StaticThreshold(0.5)
    assert pol.threshold == 0.5 and isinstance(pol.threshold, float)
    assert pol(_block(z), cap).tolist() == (c >= 0.5).sum(1).tolist() == [2, 0]
    assert pol(_block(z), torch.tensor([1, 4])).tolist() == [1, 0]
    # temperatures [K] (longer than K: cut to K) rescale each position's logit
    t = [0.5, 2.0, 0.25, 1.0, 9.0]
    pol_t = StaticThreshold(0.5, temperatures=t)
    assert pol_t.temperatures.dtype == torch.float32
    ct = torch.sigmoid(z.double() / torch.tensor(t[:4], dtype=torch.float64)).cumprod(1)
    assert pol_t(_block(z), cap).tolist() == (ct >= 0.5).sum(1).tolist() == [4, 0]
    assert StaticThreshold(0.0)(_block(z), cap).tolist() == [4, 4]  # bounds included
    assert StaticThreshold(1.0)(_block(z), cap).tolist() == [0, 0]
    pol.reset()
    for bad in (-0.01, 1.01):
        with pytest.raises(ValueError, match=r"threshold must be in \[0, 1\]"):
            StaticThreshold(bad)
    with pytest.raises(ValueError) as e:
        pol(DraftBlock(draft_tokens=torch.zeros(2, 4, dtype=torch.int64)), cap)
    assert str(e.value) == ("StaticThreshold needs a drafter with a confidence head (the drafter "
                            "returned confidence_logits=None); use FixedLength instead")
    t64 = StaticThreshold(0.5, temperatures=torch.tensor(t, dtype=torch.float64))
    assert t64.temperatures.dtype == torch.float32
    assert torch.equal(t64(_block(z), cap), pol_t(_block(z), cap))


def test_static_threshold_half_precision_logits():
    z = torch.tensor([[0.3, 0.3]], dtype=torch.bfloat16)
    blk = DraftBlock(draft_tokens=torch.zeros(1, 2, dtype=torch.int64), confidence_logits=z)
    a = float(torch.sigmoid(z.float())[0, 0])  # just at the threshold: kept
    assert StaticThreshold(a)(blk, torch.tensor([2])).tolist() == [1]


def _sps():
    return sched.SPSProfile([1, 4, 16, 64], [100.0, 90.0, 50.0, 14.0])


def _causal(z, table, cap, temps=None, **kw):
    t = torch.ones(z.shape[1]) if temps is None else torch.tensor(temps)
    c = torch.sigmoid(z / t).double()  # calibrated in float32, scheduled in float64
    return sched.schedule_causal(c, table, cap, **kw).lengths


def test_scheduled_causal_matches_the_scheduler():
    g = torch.Generator().manual_seed(0)
    zs = [torch.randn(3, 4, generator=g) + 2.5 for _ in range(4)]
    cap = torch.tensor([4, 1, 2])
    t = [0.8, 6.0, 1.0, 2.0]
    table = _sps().table(15)
    pol = Scheduled(_sps(), temperatures=t)
    for z in zs:  # every round causal (no capacity carried between rounds)
        assert torch.equal(pol(_block(z), cap), _causal(z, table, cap, t))
    z = zs[0]
    assert not torch.equal(_causal(z, table, cap, t), _causal(z, table, cap))  # T matters
    assert not torch.equal(_causal(z, table, None, t), _causal(z, table, cap, t))  # cap too
    assert list(pol._tables) == [(15, torch.device("cpu"))]  # rows * (K + 1) batch tokens
    assert Scheduled(_sps(), temperatures=torch.tensor(t, dtype=torch.float64)
                     ).temperatures.dtype == torch.float32
    capped = Scheduled(_sps(), max_batch_tokens=6)
    got = capped(_block(z), cap)
    assert torch.equal(got, _causal(z, _sps().table(6), cap, max_batch_tokens=6))
    assert list(capped._tables) == [(6, torch.device("cpu"))]
    table = _sps().table(40)
    raw = Scheduled(table)
    assert torch.equal(raw(_block(z), cap), _causal(z, table, cap))
    assert raw.draft_this_round(3) is True and raw.gate is None
    with pytest.raises(ValueError, match="mode must be 'causal' or 'async', got 'x'"):
        Scheduled(table, mode="x")
    with pytest.raises(ValueError, match="Scheduled needs a drafter"):
        raw(DraftBlock(draft_tokens=torch.zeros(3, 4, dtype=torch.int64)), cap)


def test_scheduled_async_matches_the_async_scheduler():
    g = torch.Generator().manual_seed(1)
    zs = [torch.randn(2, 3, generator=g) + 2.5 for _ in range(4)]
    cap = torch.tensor([3, 1])
    table = _sps().table(40)
    pol = Scheduled(table, mode="async", max_batch_tokens=5)
    ref = sched.AsyncScheduler(table, max_batch_tokens=5)
    for z in zs:
        got = pol(_block(z), cap)
        assert torch.equal(got, ref.step(torch.sigmoid(z.double()), cap).lengths)
        assert int(got[1]) <= 1
    pol.reset()  # forgets the capacities: the first steps again
    ref2 = sched.AsyncScheduler(table, max_batch_tokens=5)
    for z in zs[:2]:
        assert torch.equal(pol(_block(z), cap), ref2.step(torch.sigmoid(z.double()), cap).lengths)


def test_scheduled_gate_skips_when_drafting_loses():
    table = _sps().table(40)
    z = torch.full((1, 3), -6.0)  # hopeless drafts: a drafted round cannot pay
    pol = Scheduled(table, draft_time=1.0, probe_every=2)
    assert pol.gate.probe_every == 2
    assert pol.draft_this_round(1)  # nothing observed yet
    pol(_block(z), torch.tensor([3]))
    assert [pol.draft_this_round(1) for _ in range(3)] == [False, False, True]
    pol.reset()
    assert pol.draft_this_round(1) and pol.gate.skipped_rounds == 0
    free = Scheduled(table, draft_time=0.0)
    free(_block(torch.full((1, 3), 6.0)), torch.tensor([3]))
    assert free.draft_this_round(1)
    default = Scheduled(table, draft_time=1.0)
    assert default.gate.probe_every == 4
    # the gate judges the round with the rows' caps: nothing may be verified, nothing pays
    capped = Scheduled(table, draft_time=1e-6)
    capped(_block(torch.full((1, 3), 6.0)), torch.tensor([0]))
    assert not capped.draft_this_round(1)


def test_scheduled_measured_gate_and_round_reports():
    table = _sps().table(40)
    pol = Scheduled(table, draft_time="measured", probe_every=3)
    assert isinstance(pol.gate, sched.MeasuredGate) and pol.gate.probe_every == 3
    seen = []
    pol.gate.observe_round = lambda *a: seen.append(a)
    pol.observe_round(True, 5, 0.25)
    assert seen == [(True, 5, 0.25)]
    Scheduled(table).observe_round(False, 1, 0.1)  # no gate: nothing to tell
    with pytest.raises(ValueError) as e:
        Scheduled(table, draft_time="fast")
    assert str(e.value) == ("draft_time must be seconds, a function of the rows or "
                            "'measured', got 'fast'")
    assert isinstance(Scheduled(table, draft_time=0.5).gate, sched.DraftGate)


# ------------------------------------------------------------------ stats

def _round(rows, verified, accepted, k, z=True, drafted=True):
    flags = torch.full((len(rows), k), -1, dtype=torch.int8)
    conf = (torch.arange(len(rows) * k, dtype=torch.float64).reshape(-1, k) if z else None)
    return RoundStats(torch.tensor(rows), torch.tensor(verified), torch.tensor(accepted), flags,
                      conf, drafted)


def test_generation_stats_values():
    s = GenerationStats(3, [_round([0, 1], [3, 2], [1, 2], 3), _round([0], [3], [0], 3),
                            _round([1], [0], [0], 3, z=False, drafted=False)],
                        timings={"draft": 1.5})
    assert s.gamma == 3 and s.draft_len == 3 and s.num_rounds == 3
    assert repr(s) == "GenerationStats(gamma=3, rounds=3)"
    assert s.verified().tolist() == [3, 2, 3, 0] and s.accepted().tolist() == [1, 2, 0, 0]
    assert s.accepted_length() == pytest.approx(1.75)
    # reached k: k <= accepted and k < verified
    ca = s.conditional_acceptance()
    assert ca.dtype == torch.float64
    assert ca[:2].tolist() == pytest.approx([2 / 3, 1 / 2]) and ca[2].isnan()  # none reached
    ps = s.prefix_survival()
    assert ps.tolist() == pytest.approx([2 / 3, 1 / 3, 0.0])
    z, y, m = s.calibration_inputs()  # the skipped round is left out
    assert z.dtype == torch.float32 and z.shape == (3, 3)
    assert z[:, 0].tolist() == [0.0, 3.0, 0.0]
    assert y.tolist() == [[True, False, False], [True, True, False], [False] * 3]
    assert m.tolist() == [[True] * 3, [True, True, False], [True] * 3]
    summ = s.summary()
    cond = summ.pop("conditional_acceptance")
    assert cond[:2] == ca[:2].tolist() and cond[2] != cond[2]  # NaN
    assert summ == {"rounds": 3, "accepted_length": pytest.approx(1.75),
                    "mean_verified": 2.0, "prefix_survival": ps.tolist(),
                    "timings": {"draft": 1.5}}
    summ["timings"]["x"] = 1
    assert s.timings == {"draft": 1.5}


def test_generation_stats_empty_and_errors():
    rounds = []
    s = GenerationStats(draft_len=2, rounds=rounds)
    s.rounds.append(_round([0], [1], [1], 2))
    assert rounds == []  # copied
    e = GenerationStats(gamma=2)
    assert e.rounds == [] and e.timings == {}
    assert e.verified().shape == (0,) and e.verified().dtype == torch.int64
    import math
    assert math.isnan(e.accepted_length())
    z, y, m = e.calibration_inputs()
    assert z.shape == y.shape == m.shape == (0, 2) and y.dtype == m.dtype == torch.bool
    assert e.summary()["mean_verified"] == 0.0 and e.summary()["rounds"] == 0
    assert e._cat("flags").shape == (0, 2) and e._cat("confidence_logits").shape == (0, 2)
    with pytest.raises(TypeError) as e:
        GenerationStats()
    assert str(e.value) == "GenerationStats needs gamma (or its older name draft_len), once"
    with pytest.raises(TypeError, match="once"):
        GenerationStats(2, draft_len=2)
    no_head = GenerationStats(2, [_round([0], [1], [1], 2, z=False)])
    with pytest.raises(ValueError) as e:
        no_head.calibration_inputs()
    assert str(e.value) == "the drafter has no confidence head: no confidence logits"
    assert GenerationStats(2.0).gamma == 2 and isinstance(GenerationStats(2.0).gamma, int)


# ------------------------------------------------------------------ inputs

def test_prompts_lists_and_padding():
    tok, n, start = inp.prompts_to_right_padded([[5, 6, 7], [8]], None)
    assert tok.tolist() == [[5, 6, 7], [8, 0, 0]] and n.tolist() == [3, 1]
    assert start.tolist() == [0, 0] and tok.dtype == torch.int64
    left = torch.tensor([[0, 0, 4, 5], [1, 2, 3, 9]], dtype=torch.int32)
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    tok, n, start = inp.prompts_to_right_padded(left, mask)
    assert tok.tolist() == [[4, 5, 0, 0], [1, 2, 3, 9]] and tok.dtype == torch.int64
    assert n.tolist() == [2, 4] and start.tolist() == [2, 0]
    right = torch.tensor([[4, 5, 7, 7]])
    tok, n, start = inp.prompts_to_right_padded(right, torch.tensor([[1, 1, 0, 0]]))
    assert tok.tolist() == [[4, 5, 0, 0]] and n.tolist() == [2] and start.tolist() == [0]
    mid = torch.tensor([[3, 4, 5, 6]])
    tok, n, start = inp.prompts_to_right_padded(mid, torch.tensor([[0, 1, 1, 0]]))
    assert tok.tolist() == [[4, 5, 0, 0]] and start.tolist() == [1]
    tok, n, start = inp.prompts_to_right_padded(torch.tensor([3, 4]), torch.tensor([0, 1]))
    assert tok.tolist() == [[4, 0]] and n.tolist() == [1]
    tok, n, _ = inp.prompts_to_right_padded(torch.tensor([3, 4]), None)
    assert tok.tolist() == [[3, 4]] and n.tolist() == [2]
    tok, n, start = inp.prompts_to_right_padded(torch.tensor([[5], [6]]), None)  # width 1
    assert tok.tolist() == [[5], [6]] and n.tolist() == [1, 1]
    mask_bool = torch.tensor([[False, True]])
    assert inp.prompts_to_right_padded(torch.tensor([[3, 4]]), mask_bool)[0].tolist() == [[4, 0]]


def test_prompt_errors_name_the_argument():
    f = inp.prompts_to_right_padded
    with pytest.raises(ValueError) as e:
        f([[1]], torch.ones(1, 1))
    assert str(e.value) == "attention_mask goes with a padded input_ids tensor, not a list"
    with pytest.raises(TypeError, match="input_ids must be a tensor or a list of token lists, "
                                        "got str"):
        f("abc", None)
    with pytest.raises(ValueError, match=r"integer tensor \[B, L\], got \(2, 2\) torch.float32"):
        f(torch.zeros(2, 2), None)
    with pytest.raises(ValueError, match=r"integer tensor \[B, L\], got \(1, 1, 1\)"):
        f(torch.zeros(1, 1, 1, dtype=torch.int64), None)
    with pytest.raises(ValueError) as e:
        f(torch.zeros(0, 3, dtype=torch.int64), None)
    assert str(e.value) == "input_ids holds no prompts (batch size 0)"
    with pytest.raises(ValueError, match=r"^input_ids holds no prompts \(batch size 0\)$"):
        f([], None)
    with pytest.raises(ValueError, match=r"attention_mask must have input_ids' shape \(1, 2\), "
                                         r"got \(1, 3\)"):
        f(torch.zeros(1, 2, dtype=torch.int64), torch.ones(1, 3))
    with pytest.raises(ValueError) as e:
        f(torch.ones(2, 2, dtype=torch.int64), torch.tensor([[1, 0], [0, 0]]))
    assert str(e.value) == ("prompt rows [1] have no tokens after padding: every prompt needs "
                            "at least one token")
    with pytest.raises(ValueError, match=r"prompt rows \[0, 1\] have no tokens"):
        f(torch.ones(2, 0, dtype=torch.int64), None)
    with pytest.raises(ValueError, match=r"prompt rows \[0\] have no tokens"):
        f([[]], None)
    with pytest.raises(ValueError) as e:
        f(torch.ones(2, 3, dtype=torch.int64), torch.tensor([[1, 1, 0], [1, 0, 1]]))
    assert str(e.value) == ("attention_mask rows [1] are not one contiguous run of tokens "
                            "(left or right padding only)")


def test_check_token_ids():
    tok = torch.tensor([[1, 2, 99], [3, 9, 0]])
    inp.check_token_ids(tok, torch.tensor([2, 2]), 10)  # 99 is padding
    inp.check_token_ids(torch.tensor([[0, 9]]), torch.tensor([2]), 10)  # both ends allowed
    with pytest.raises(ValueError, match=r"input_ids row 1 holds token id 10 \(at its token "
                                         r"1\), outside the target's vocabulary \[0, 10\)"):
        inp.check_token_ids(torch.tensor([[1, 2], [3, 10]]), torch.tensor([2, 2]), 10)
    with pytest.raises(ValueError, match="token id -1"):
        inp.check_token_ids(torch.tensor([[-1]]), torch.tensor([1]), 10)


def test_per_row_temperature():
    cpu = torch.device("cpu")
    t = inp.per_row_temperature(0.5, 3, cpu)
    assert t.tolist() == [0.5] * 3 and t.dtype == torch.float32 and t.is_contiguous()
    t = inp.per_row_temperature(torch.tensor([0.0, 2.0], dtype=torch.float64), 2, cpu)
    assert t.tolist() == [0.0, 2.0] and t.dtype == torch.float32
    with pytest.raises(ValueError, match=r"temperature must be a number or a tensor \[3\], got "
                                         r"shape \(2,\)"):
        inp.per_row_temperature(torch.ones(2), 3, cpu)
    for bad in (-0.5, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="temperature must be finite and >= 0"):
            inp.per_row_temperature(bad, 2, cpu)


def test_per_row_seed():
    cpu = torch.device("cpu")
    assert inp.per_row_seed(7, 3, cpu).tolist() == [7, 8, 9]
    s = torch.tensor([5, 1], dtype=torch.int64)
    assert inp.per_row_seed(s, 2, cpu).tolist() == [5, 1]
    r = inp.per_row_seed(None, 3, cpu)
    assert r.dtype == torch.int64 and (r[1:] - r[:-1]).tolist() == [1, 1]
    # drawn from [0, 2^62): four draws all below 2^40 would have probability 2^-88
    assert max(int(inp.per_row_seed(None, 1, cpu)) for _ in range(4)) >= 1 << 40
    assert all(0 <= int(inp.per_row_seed(None, 1, cpu)) < 1 << 62 for _ in range(4))
    big = (1 << 63) - 3
    assert inp.per_row_seed(big, 3, cpu).tolist() == [big, big + 1, big + 2]
    assert inp.per_row_seed(-(1 << 63), 1, cpu).tolist() == [-(1 << 63)]
    with pytest.raises(ValueError, match=r"fit in int64 \(row b uses seed \+ b, b < 3\)"):
        inp.per_row_seed(big + 1, 3, cpu)
    with pytest.raises(ValueError, match="fit in int64"):
        inp.per_row_seed(-(1 << 63) - 1, 1, cpu)
    with pytest.raises(ValueError, match=r"an int64 tensor \[2\], got \(3,\) torch.int64"):
        inp.per_row_seed(torch.zeros(3, dtype=torch.int64), 2, cpu)
    with pytest.raises(ValueError, match="torch.int32"):
        inp.per_row_seed(torch.zeros(2, dtype=torch.int32), 2, cpu)
    with pytest.raises(TypeError, match="seed must be an int or an int64 tensor, got bool"):
        inp.per_row_seed(True, 2, cpu)
    with pytest.raises(TypeError, match="got float"):
        inp.per_row_seed(1.0, 2, cpu)


def test_token_set_and_offsets():
    cpu = torch.device("cpu")
    assert inp.token_set(None, 10, cpu) is None
    assert inp.token_set([], 10, cpu) is None
    assert inp.token_set(3, 10, cpu).tolist() == [3]
    ids = inp.token_set([[0, 9]], 10, cpu)
    assert ids.tolist() == [0, 9] and ids.dtype == torch.int64
    assert inp.token_set(torch.tensor([4], dtype=torch.int32), 10, cpu).dtype == torch.int64
    for bad in (10, -1):
        with pytest.raises(ValueError, match=rf"eos_token_id \[{bad}\] outside the vocabulary "
                                             r"\[0, 10\)"):
            inp.token_set([bad], 10, cpu)
    inp.check_offsets(MAX_OFFSET - 1)
    with pytest.raises(ValueError, match=f"more than {MAX_OFFSET} rounds"):
        inp.check_offsets(MAX_OFFSET)


# ------------------------------------------------------------------ batch state

class _Recorder:
    def __init__(self):
        self.calls = []

    def select_rows(self, rows):
        self.calls.append(rows.tolist())


def test_batch_state_keep():
    target, drafter = _Recorder(), _Recorder()
    st = BatchState(target, drafter, torch.tensor([10, 11, 12, 13]),
                    torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([5, 6, 7, 8]))
    assert len(st) == 4 and st.rows.tolist() == [0, 1, 2, 3]
    assert st.target is target and st.drafter is drafter
    st.keep(torch.tensor([0, 1, 2, 3]))  # nothing finished: nothing to compact
    assert target.calls == [] and drafter.calls == []
    st.keep(torch.tensor([3, 1]))
    assert st.rows.tolist() == [3, 1] and st.anchor.tolist() == [13, 11]
    assert st.temperature.tolist() == [3.0, 1.0] and st.seed.tolist() == [8, 6]
    assert target.calls == drafter.calls == [[3, 1]]
    st.keep(torch.tensor([1]))  # indices into the current rows
    assert st.rows.tolist() == [1] and st.anchor.tolist() == [11] and len(st) == 1
    assert target.calls[-1] == [1] and drafter.calls[-1] == [1]


# ------------------------------------------------------------------ verification

def test_resolve_method():
    assert METHODS == ("greedy", "token", "block")
    assert resolve_method(None, None, "token") == "token"
    assert resolve_method("block", None, "token") == "block"
    assert resolve_method(None, "greedy", "token") == "greedy"
    assert resolve_method("block", "block", "token") == "block"
    with pytest.raises(ValueError, match="method='block' and its older name verify='token' "
                                         "disagree"):
        resolve_method("block", "token", "greedy")
    with pytest.raises(ValueError, match=r"must be one of \('greedy', 'token', 'block'\), got "
                                         r"'fast'"):
        resolve_method("fast", None, "token")
    with pytest.raises(ValueError, match="got 'x'"):
        resolve_method(None, None, "x")


def test_first_token():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(3, 16, generator=g)
    t = torch.tensor([0.0, 1.0, 0.7])
    seed = torch.tensor([3, 4, 5])
    got = first_token(logits, t, seed, None, None)
    assert got[0] == logits[0].argmax()
    want = sample_target(logits, t, seed, torch.zeros(3, dtype=torch.int64))
    assert torch.equal(got, want)
    top1 = first_token(logits, torch.ones(3), seed, 1, None)
    assert torch.equal(top1, logits.argmax(1))  # top_k reaches the sampler
    topp = first_token(logits, torch.ones(3), seed, None, 1e-6)
    assert torch.equal(topp, logits.argmax(1))  # top_p too


def test_verify_cap():
    d = torch.tensor([[1, 0, 3, 4], [0, -1, 3, 4], [1, 2, 3, 4], [-1, 2, 3, 4]])  # 0 is an id
    room = torch.tensor([9, 9, 3, 9])
    assert verify_cap(DraftBlock(d), room, 4).tolist() == [4, 1, 2, 0]
    assert verify_cap(DraftBlock(d), room, 3).tolist() == [3, 1, 2, 0]
    nv = torch.tensor([2, 4, 4, 4], dtype=torch.int32)
    cap = verify_cap(DraftBlock(d, num_valid=nv), room, 4)
    assert cap.tolist() == [2, 1, 2, 0] and cap.dtype == torch.int64
    assert verify_cap(DraftBlock(d), torch.tensor([1, 1, 1, 1]), 4).tolist() == [0] * 4


def _verify_case(v=12, k=3, seed=3):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, k + 1, v, generator=g)
    q = torch.randn(2, k, v, generator=g)
    drafts = torch.stack([logits[0, :k].argmax(-1), q[1].argmax(-1)])
    return logits, q, drafts


def test_verify_drafts_greedy_and_truncation():
    logits, q, drafts = _verify_case()
    drafts[1] = logits[1, :3].argmax(-1)  # both rows draft the target's greedy tokens
    blk = DraftBlock(drafts, draft_logits=q)
    nd = torch.tensor([3, 1])
    t, seed, off = torch.zeros(2), torch.tensor([1, 2]), torch.tensor([0, 0])
    got = verify_drafts(logits, drafts, blk, nd, t, seed, off, "greedy", None, None)
    want = verify_greedy(logits, drafts, nd)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert got.accepted.tolist() == [3, 1]  # row 1 verifies one draft only
    # top_k = 1 at T = 1: the truncated law is the argmax, drafts equal to it are accepted
    one = torch.ones(2)
    got = verify_drafts(logits, drafts, blk, nd, one, seed, off, "token", 1, None)
    want = rejection_sample(truncate_logits(logits, one, 1, None), drafts, q, one, seed, off, nd)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    assert got.accepted[0] == 3 and torch.equal(got.out_tokens[0], logits[0].argmax(-1))
    # top_p reaches the verification too: a tiny top_p leaves the argmax alone
    got = verify_drafts(logits, drafts, blk, nd, one, seed, off, "token", None, 1e-6)
    assert got.accepted.tolist() == [3, 1]
    assert torch.equal(got.out_tokens[0], logits[0].argmax(-1))
    assert int(got.out_tokens[1, 1]) == int(logits[1, 1].argmax())
    untruncated = rejection_sample(logits, drafts, q, one, seed, off, nd)
    assert not torch.equal(untruncated.out_tokens, got.out_tokens)


@pytest.mark.parametrize("method", ["token", "block"])
def test_verify_drafts_sampled(method):
    logits, q, drafts = _verify_case(k=4, seed=4)
    t, seed, off = torch.tensor([1.0, 0.8]), torch.tensor([11, 12]), torch.tensor([2, 3])
    nd = torch.tensor([2, 2])
    # the block holds K = 4 drafts, only 2 are verified: q is cut to the drafts' width
    got = verify_drafts(logits[:, :3], drafts[:, :2], DraftBlock(drafts, draft_logits=q), nd,
                        t, seed, off, method, None, 0.9)
    want = rejection_sample(truncate_logits(logits[:, :3], t, None, 0.9), drafts[:, :2],
                            q[:, :2], t, seed, off, nd, method=method)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # one-hot drafts (no draft logits)
    got = verify_drafts(logits, drafts, DraftBlock(drafts), nd, t, seed, off, method, None, None)
    want = rejection_sample(logits, drafts, None, t, seed, off, nd, method=method)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
    # a bf16 drafter next to an fp32 target: q is cast to the target's dtype
    qb = q.bfloat16()
    got = verify_drafts(logits, drafts, DraftBlock(drafts, draft_logits=qb), nd, t, seed, off,
                        method, None, None)
    want = rejection_sample(logits, drafts, qb.float(), t, seed, off, nd, method=method)
    assert all(torch.equal(a, b) for a, b in zip(got, want))
