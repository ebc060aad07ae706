"""The teacher-forced forward's targets and checks as values (issue 21, mutation testing of
drafters/dspark/training.py): block_targets on hand-computed cases (the sequence's end, the
loss mask, dropped blocks), the loss mask reaching teacher_forced, no confidence head, and
the exact messages of every input check."""
import re

import pytest
import torch

from dspark_ext.drafters.dspark.training import block_targets

from dspark_cases import FEATURES, make_model

IDS = torch.tensor([[10, 11, 12, 13, 14, 15, 16, 17]])  # S = 8


def test_targets_near_the_end_of_the_sequence():
    # block size 4 from anchors 1 and 5: the second block runs past S = 8
    t, m, prev = block_targets(IDS, torch.tensor([[1, 5]]), torch.tensor([[True, True]]), 4)
    assert t.tolist() == [[[12, 13, 14, 15], [16, 17, 17, 17]]]  # clamped inside
    assert m.tolist() == [[[True] * 4, [True, True, False, False]]]
    assert prev.tolist() == [[[11, 12, 13, 14], [15, 16, 17, 17]]]


def test_dropped_blocks_and_the_loss_mask():
    loss = torch.tensor([[1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.5, 1.0]])
    t, m, prev = block_targets(IDS, torch.tensor([[0, 3]]), torch.tensor([[True, False]]), 3,
                               loss)
    assert t.tolist() == [[[11, 12, 13], [10, 10, 10]]]  # a dropped block reads token 0
    # slot 2 of block 0 targets position 3 (loss 0): it and what follows are not supervised
    assert m.tolist() == [[[True, True, False], [False, False, False]]]
    assert prev.tolist() == [[[10, 11, 12], [13, 10, 10]]]
    # 0.5 is not supervised (> 0.5), 1 is
    t, m, _ = block_targets(IDS, torch.tensor([[4]]), torch.tensor([[True]]), 3, loss)
    assert t.tolist() == [[[15, 16, 17]]] and m.tolist() == [[[True, False, False]]]
    # a second row: the mask is read per row
    ids2 = torch.cat([IDS, IDS + 10])
    loss2 = torch.cat([torch.ones(1, 8), torch.tensor([[1.0, 0, 1, 1, 1, 1, 1, 1]])])
    _, m, _ = block_targets(ids2, torch.tensor([[0], [0]]), torch.ones(2, 1, dtype=torch.bool),
                            2, loss2)
    assert m.tolist() == [[[True, True]], [[False, False]]]


def _inputs(s=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(1, s, FEATURES, generator=g), torch.randint(0, 90, (1, s), generator=g),
            torch.tensor([[0, 5]]), torch.tensor([[True, True]]))


def test_loss_mask_reaches_the_targets():
    model = make_model("vanilla_conf_markov")
    feats, ids, anchors, keep = _inputs()
    loss = torch.ones(1, 12)
    loss[0, 7] = 0  # slot 1 of the block at 5
    out = model.teacher_forced(feats, ids, anchors, keep, loss)
    assert out.label_mask[0, 1].tolist() == [True, False, False, False]
    assert out.label_mask[0, 0].all()
    dflash = make_model("dflash").teacher_forced(feats, ids, anchors, keep)
    assert dflash.confidence_logits is None


def _msg(text):
    return "^" + re.escape(text) + "$"


def test_input_check_messages():
    model = make_model("vanilla")
    feats, ids, anchors, keep = _inputs()
    with pytest.raises(ValueError, match=_msg("input_ids must be int64 [B, S], got torch.int32 "
                                              "(1, 12)")):
        model.teacher_forced(feats, ids.int(), anchors, keep)
    with pytest.raises(ValueError, match=_msg("input_ids must be int64 [B, S], got torch.int64 "
                                              "(12,)")):
        model.teacher_forced(feats, ids[0], anchors, keep)
    with pytest.raises(ValueError, match=_msg("anchors must be int64 [B = 1, N], got "
                                              "torch.int64 (2, 2)")):
        model.teacher_forced(feats, ids, torch.zeros(2, 2, dtype=torch.int64), keep)
    with pytest.raises(ValueError, match=_msg("anchors must be int64 [B = 1, N], got "
                                              "torch.int64 (2,)")):
        model.teacher_forced(feats, ids, anchors[0], keep)
    with pytest.raises(ValueError, match=_msg("anchors must be int64 [B = 1, N], got "
                                              "torch.int32 (1, 2)")):
        model.teacher_forced(feats, ids, anchors.int(), keep)
    with pytest.raises(ValueError, match=_msg("loss_mask must be [B, S] = [1, 12], got (1, 11)")):
        model.teacher_forced(feats, ids, anchors, keep, torch.ones(1, 11))
    with pytest.raises(ValueError, match=_msg("anchors must lie in [0, S = 12)")):
        model.teacher_forced(feats, ids, torch.tensor([[0, 12]]), keep)
    with pytest.raises(ValueError, match=_msg("anchors must lie in [0, S = 12)")):
        model.teacher_forced(feats, ids, torch.tensor([[-1, 3]]), keep)
    model.teacher_forced(feats, ids, torch.tensor([[0, 11]]), keep)  # the last position is valid
