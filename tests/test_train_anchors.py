"""Anchor sampling, and the training forward's block isolation as the drafter computes it
(the mask matrix itself is tested in test_dspark_training.py)."""
import torch

from dspark_ext.train import anchor_candidates, sample_anchors

import train_cases as tc


def test_candidates_are_supervised_positions_with_a_supervised_successor():
    mask = torch.tensor([[0, 1, 1, 1, 0, 1, 1], [1, 1, 1, 1, 1, 1, 1.0]])
    c = anchor_candidates(mask)
    assert c[0].nonzero().flatten().tolist() == [1, 2, 5]
    assert c[1].nonzero().flatten().tolist() == [0, 1, 2, 3, 4, 5]


def test_sample_anchors_uniform_sorted_deterministic():
    mask = torch.zeros(3, 40)
    mask[0, 5:] = 1
    mask[1, 30:33] = 1   # two candidates only
    anchors, keep = sample_anchors(mask, 8, seeds=[1, 2, 3])
    assert anchors.shape == (3, 8)
    assert keep[0].all() and keep[1].sum() == 2 and not keep[2].any()
    cand = anchor_candidates(mask)
    for row in range(3):
        a = anchors[row][keep[row]]
        assert torch.equal(a, a.sort().values) and a.unique().numel() == a.numel()
        assert cand[row, a].all()
    # a row's anchors depend on its seed only, not on the batch around it
    alone, _ = sample_anchors(mask[:1], 8, seeds=[1])
    assert torch.equal(alone[0], anchors[0])
    # uniform: every candidate is drawn about equally often
    counts = torch.zeros(40)
    for s in range(400):
        a, k = sample_anchors(mask[:1], 5, seeds=[s])
        counts[a[k]] += 1
    hit = counts[5:39]
    assert counts[:5].sum() == 0 and counts[39] == 0
    assert hit.min() > 0.5 * hit.mean() and hit.max() < 1.5 * hit.mean()


def test_training_blocks_see_only_their_context_and_themselves():
    drafter = tc.fresh_drafter(tc.random_target())
    g = torch.Generator().manual_seed(0)
    s, f = 24, drafter.config.feature_size
    feats = torch.randn(1, s, f, generator=g)
    ids = torch.randint(0, tc.VOCAB - 1, (1, s), generator=g)
    anchors = torch.tensor([[3, 9, 15]])
    keep = torch.ones(1, 3, dtype=torch.bool)
    base = drafter.teacher_forced(feats, ids, anchors, keep).hidden
    p = 9  # block 1: change everything at or after its anchor except the anchor token, and
    f2, i2 = feats.clone(), ids.clone()  # every other block's tokens
    f2[:, p:] += 1.0
    i2[:, p + 1:] = (i2[:, p + 1:] + 1) % (tc.VOCAB - 1)
    i2[:, 3] = (i2[:, 3] + 1) % (tc.VOCAB - 1)
    out = drafter.teacher_forced(f2, i2, anchors, keep).hidden
    torch.testing.assert_close(out[0, 1], base[0, 1], atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out[0, 2], base[0, 2])  # a later block does see position 9..
    f3 = feats.clone()
    f3[:, p - 1] += 1.0  # the context just before the anchor is seen
    assert not torch.allclose(drafter.teacher_forced(f3, ids, anchors, keep).hidden[0, 1],
                              base[0, 1])
