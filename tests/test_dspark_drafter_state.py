"""DSparkDrafter's argument checks, build options and per-call state (issue 21, mutation
testing): exact messages, the device check of ``reset``, ``dtype=``, the block-step cache
across block sizes, ``repr`` and the ``markov`` profile phase."""
import pytest
import torch

from dspark_ext.drafters.dspark import DSparkDrafter
from dspark_ext.profiling import PhaseTimer
from dspark_cases import FEATURES, History, make_config, make_model, row_args


def _raises(exc, text, fn, *a):
    with pytest.raises(exc) as e:
        fn(*a)
    assert str(e.value) == text


def test_messages():
    model = make_model("vanilla")
    t, s, o = row_args(2)
    anchor = torch.tensor([1, 2])
    _raises(RuntimeError, "call reset(batch_size, device) before update()/draft()",
            model.draft, anchor, anchor, 1, t, s, o)
    _raises(ValueError, "reset(device=meta) but the drafter's weights are on cpu; move the "
            "drafter first (.to(device))", model.reset, 2, "meta")
    model.reset(2, torch.device("cpu"))
    hist = History(2)
    model.update(hist.update([2, 2]))
    pos = hist.lengths
    _raises(TypeError, "anchor must be a tensor, got list", model.draft, [1, 2], pos, 1, t, s, o)
    _raises(ValueError, "offset is on meta but the drafter's cache is on cpu", model.draft,
            anchor, pos, 1, t, s, o.to("meta"))
    bad = torch.zeros(2, 1, FEATURES + 1)
    with pytest.raises(ValueError) as e:
        model.project_context(bad)
    assert str(e.value) == (f"features must have F = len(target_layer_ids) * hidden_size = "
                            f"{FEATURES} channels, got shape (2, 1, {FEATURES + 1})")


def test_dtype_build_and_repr():
    cfg = make_config("vanilla")
    m = DSparkDrafter(cfg, dtype=torch.bfloat16)
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16} and m.dtype == torch.bfloat16
    assert {p.dtype for p in DSparkDrafter(cfg).parameters()} == {torch.float32}
    assert repr(m).startswith("DSparkDrafter(\n  DSpark (vanilla, r=8), block_size=4, "
                              "target_layer_ids=")
    assert "confidence_head=False" in m.extra_repr()
    d = DSparkDrafter(make_config("dflash_conf"))
    assert d.extra_repr().startswith("DFlash, block_size=4") and "confidence_head=True" in \
        d.extra_repr()


def test_fresh_weights_use_the_initializer_range():
    cfg = make_config("vanilla")
    m = DSparkDrafter(cfg)
    std = cfg.initializer_range
    for name, p in m.named_parameters():
        if name.endswith("weight") and p.dim() == 2:
            assert abs(float(p.detach().std()) - std) < 0.3 * std, name  # not the default init
        elif "norm" in name:
            assert bool((p == 1).all()), name


def test_block_sizes_change_between_calls():
    """gamma 2, then 4, then 2 again: each block has its own width of steps."""
    model = make_model("vanilla_conf_markov")
    fresh = make_model("vanilla_conf_markov")
    for m in (model, fresh):
        m.reset(2, "cpu")
    hist = History(2)
    upd = hist.update([3, 2])
    model.update(upd)
    fresh.update(upd)
    t, s, o = row_args(2)
    anchor = torch.tensor([5, 6])
    model.draft(anchor, hist.lengths, 2, t, s, o)
    model.reset(2, "cpu")
    model.update(upd)
    a = model.draft(anchor, hist.lengths, 4, t, s, o)
    b = fresh.draft(anchor, hist.lengths, 4, t, s, o)
    assert a.draft_tokens.shape == (2, 4) and torch.equal(a.draft_tokens, b.draft_tokens)
    torch.testing.assert_close(a.draft_logits, b.draft_logits)


def test_markov_phase_in_profiles():
    model = make_model("vanilla")
    model.reset(1, "cpu")
    hist = History(1)
    model.update(hist.update([2]))
    t, s, o = row_args(1)
    with PhaseTimer() as timer:
        model.draft(torch.tensor([3]), hist.lengths, 2, t, s, o)
    assert "markov" in timer.exclusive() and None not in timer.exclusive()
    assert set(timer.exclusive()) <= {"markov", "draft"}
