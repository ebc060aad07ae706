"""The drafter protocol's helpers (issue 21, mutation testing): the rollback rule, the ragged
append for skipped rounds, the block's defaults and the runtime-checkable protocol."""
import torch

from dspark_ext import NgramDrafter
from dspark_ext.drafters.base import (ContextUpdate, DraftBlock, Drafter, append_ragged,
                                      concat_ragged, kept_draft_state)


def test_kept_draft_state():
    processed = torch.tensor([4, 4, 0, 2])
    assert kept_draft_state(processed, None).tolist() == [0, 0, 0, 0]
    assert kept_draft_state(processed, None).dtype == torch.int64
    kept = kept_draft_state(processed, torch.tensor([0, 3, 2, 1], dtype=torch.int32))
    assert kept.tolist() == [1, 4, 0, 2] and kept.dtype == torch.int64


def test_append_ragged_known_values_and_padding():
    a = torch.tensor([[1, 2, 0], [3, 0, 0], [0, 0, 0]])
    b = torch.tensor([[7, 8], [9, 0], [5, 6]])
    out, n = append_ragged(a, torch.tensor([2, 1, 0]), b, torch.tensor([2, 1, 2]))
    assert n.tolist() == [4, 2, 2]
    assert out[0, :4].tolist() == [1, 2, 7, 8]
    assert out[1, :2].tolist() == [3, 9]
    assert out[2, :2].tolist() == [5, 6]
    # the padding repeats valid entries of the row (never reads past the inputs)
    assert out.shape == (3, 5)
    for r, (row, k) in enumerate(zip(out.tolist(), n.tolist())):
        assert set(row[k:]) <= set(row[:k]) | set(a[r].tolist()) | set(b[r].tolist())
    f = torch.arange(12.0).view(2, 3, 2)  # trailing feature dimensions follow the tokens
    g = -torch.arange(8.0).view(2, 2, 2)
    out, n = append_ragged(f, torch.tensor([1, 3]), g, torch.tensor([2, 0]))
    assert n.tolist() == [3, 3]
    assert out[0, :3].tolist() == [[0.0, 1.0], [-0.0, -1.0], [-2.0, -3.0]]
    assert out[1, :3].tolist() == f[1].tolist()


def test_append_ragged_empty():
    e = torch.zeros(2, 0, dtype=torch.int64)
    out, n = append_ragged(e, torch.zeros(2, dtype=torch.int64), e, torch.zeros(2,
                                                                                dtype=torch.int64))
    assert out.shape == (2, 0) and n.tolist() == [0, 0]
    one, none = torch.tensor([[4], [5]]), torch.zeros(2, 0, dtype=torch.int64)
    out, n = append_ragged(one, torch.tensor([0, 1]), none, torch.zeros(2, dtype=torch.int64))
    assert out.shape == (2, 1) and out[1].tolist() == [5] and n.tolist() == [0, 1]
    b = torch.tensor([[4, 5], [6, 7]])
    out, n = append_ragged(e, torch.zeros(2, dtype=torch.int64), b, torch.tensor([2, 1]))
    assert out[0].tolist() == [4, 5] and out[1, 0] == 6 and n.tolist() == [2, 1]


def test_block_and_update_defaults():
    blk = DraftBlock(torch.zeros(1, 2, dtype=torch.int64))
    assert (blk.draft_logits, blk.base_logits, blk.confidence_logits, blk.hidden,
            blk.num_valid) == (None,) * 5
    ctx = ContextUpdate(torch.zeros(1, 1), torch.ones(1), torch.zeros(1, 1))
    assert ctx.features is None and ctx.accepted is None


def test_drafter_protocol_is_runtime_checkable():
    assert isinstance(NgramDrafter(), Drafter)
    assert not isinstance(object(), Drafter)


def test_concat_ragged_three_parts_two_groups():
    g = torch.Generator().manual_seed(0)
    widths, b = (2, 3, 1), 4
    tok = [torch.randint(0, 99, (b, w), generator=g) for w in widths]
    feat = [torch.randn(b, w, 2, generator=g) for w in widths]
    lens = [torch.tensor([2, 0, 1, 2]), torch.tensor([3, 1, 0, 0]), torch.tensor([1, 1, 0, 1])]
    out_tok, out_feat, n = concat_ragged(lens, tok, feat)
    assert n.tolist() == [6, 2, 1, 3]
    assert out_tok.shape == (b, 6) and out_feat.shape == (b, 6, 2)
    for r in range(b):
        want = sum((tok[s][r, : int(lens[s][r])].tolist() for s in range(3)), [])
        assert out_tok[r, : len(want)].tolist() == want
        want_f = torch.cat([feat[s][r, : int(lens[s][r])] for s in range(3)])
        assert torch.equal(out_feat[r, : len(want)], want_f)
    one, m = concat_ragged([torch.tensor([1, 0])], [torch.tensor([[5], [6]])])
    assert one[0].tolist() == [5] and m.tolist() == [1, 0]
