"""The teacher-forced training forward: its attention mask, agreement with the decode path and
with markov_sample's teacher mode, and gradients."""
import pytest
import torch

import dspark_ext
from dspark_ext.drafters.base import ContextUpdate
from dspark_ext.drafters.dspark import block_attention_mask

from dspark_cases import BLOCK, FEATURES, VARIANTS, VOCAB, make_model, row_args

ATOL = 2e-4
SEQ = 24
ANCHORS = torch.tensor([[0, 5, 11, 17], [2, 8, 14, 19]])  # >= BLOCK apart: blocks do not overlap
KEEP = torch.tensor([[True, True, False, True], [True, True, True, True]])


def _sequence(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, SEQ, FEATURES, generator=gen),
            torch.randint(0, VOCAB - 1, (2, SEQ), generator=gen))


def test_block_attention_mask_properties():
    anchors = torch.tensor([[0, 3, 9], [4, 4, 1]])
    keep = torch.tensor([[True, False, True], [True, True, True]])
    s, k = 12, 3
    mask = block_attention_mask(anchors, keep, s, k)
    assert mask.shape == (2, 1, 3 * k, s + 3 * k) and mask.dtype == torch.bool
    for b in range(2):
        for n in range(3):
            rows = mask[b, 0, n * k:(n + 1) * k]
            if not keep[b, n]:
                assert not rows.any()  # a dropped block sees nothing
                continue
            p = int(anchors[b, n])
            assert rows[:, :p].all() and not rows[:, p:s].any()  # context before the anchor
            own = torch.zeros(3 * k, dtype=torch.bool)
            own[n * k:(n + 1) * k] = True
            assert torch.equal(rows[:, s:], own.expand(k, -1))  # its own block, no other


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_teacher_forced_matches_draft(variant):
    """With the input tokens set to what draft() sampled, the training forward gives draft()'s
    hidden states, logits and confidences for every kept block."""
    model = make_model(variant)
    feats, ids = _sequence()
    rows = [(b, n) for b in range(2) for n in range(ANCHORS.shape[1]) if KEEP[b, n]]
    anchors = torch.stack([ANCHORS[b, n] for b, n in rows])
    model.reset(len(rows), "cpu")
    counts = anchors.tolist()
    n = max(counts)
    ctx = torch.zeros(len(rows), n, FEATURES)
    for i, (b, _) in enumerate(rows):
        ctx[i, :counts[i]] = feats[b, :counts[i]]
    model.update(ContextUpdate(torch.zeros(len(rows), n, dtype=torch.int64), anchors.clone(),
                               torch.arange(n).expand(len(rows), n).clone(), ctx))
    anchor_tok = torch.stack([ids[b, int(p)] for (b, _), p in zip(rows, anchors)])
    t, s, o = row_args(len(rows))
    out = model.draft(anchor_tok, anchors, BLOCK, t, s, o)
    assert int(anchors.max()) + BLOCK < SEQ  # every block's targets lie in the sequence
    ids = ids.clone()
    for i, (b, _) in enumerate(rows):  # the sampled tokens become the sequence's next tokens
        p = int(anchors[i])
        ids[b, p + 1:p + 1 + BLOCK] = out.draft_tokens[i]
    tf = model.teacher_forced(feats, ids, ANCHORS, KEEP)
    for i, (b, blk) in enumerate(rows):
        for name in ("hidden", "base_logits", "draft_logits", "confidence_logits"):
            if getattr(out, name) is not None:
                torch.testing.assert_close(getattr(tf, name)[b, blk], getattr(out, name)[i],
                                           atol=ATOL, rtol=ATOL,
                                           msg=lambda m, name=name: f"{name}: {m}")
        assert torch.equal(tf.target_ids[b, blk], out.draft_tokens[i])
        assert tf.label_mask[b, blk].all()
    assert not tf.label_mask[0, 2].any()  # the dropped block is never supervised
    assert torch.isfinite(tf.draft_logits).all()


@pytest.mark.parametrize("variant", ["vanilla_conf_markov", "gated_conf", "rnn_conf_markov"])
def test_teacher_forced_equals_markov_op_teacher_mode(variant):
    model = make_model(variant)
    feats, ids = _sequence(1)
    tf = model.teacher_forced(feats, ids, ANCHORS, KEEP)
    b, n, k, v = tf.base_logits.shape
    kw = dict(model.markov_head.op_kwargs())
    w1, w2 = kw.pop("w1"), kw.pop("w2")
    kw.update(model.confidence_head.op_kwargs())
    t, s, o = row_args(b * n)
    op = dspark_ext.markov_sample(tf.base_logits.detach().reshape(b * n, k, v),
                                  tf.prev_tokens[..., 0].reshape(-1), w1, w2, t, s, o,
                                  hidden=tf.hidden.detach().reshape(b * n, k, -1),
                                  teacher_tokens=tf.target_ids.reshape(b * n, k), **kw)
    torch.testing.assert_close(tf.draft_logits.detach().reshape(b * n, k, v), op.draft_logits,
                               atol=ATOL, rtol=ATOL)
    torch.testing.assert_close(tf.confidence_logits.detach().reshape(b * n, k),
                               op.confidence_logits, atol=ATOL, rtol=ATOL)


def test_teacher_forced_gradients_reach_trainable_parameters_only():
    model = make_model("rnn_conf_markov")
    model.init_from_target(model.embed_tokens.weight.detach().clone(),
                           model.lm_head.weight.detach().clone(), freeze=True)
    feats, ids = _sequence(2)
    tf = model.teacher_forced(feats, ids, ANCHORS, KEEP)
    m = tf.label_mask.float()
    loss = (torch.nn.functional.cross_entropy(tf.draft_logits.flatten(0, 2),
                                              tf.target_ids.flatten(), reduction="none")
            * m.flatten()).sum() + (tf.confidence_logits * m).sum()
    loss.backward()
    for name, p in model.named_parameters():
        if name.startswith(("embed_tokens", "lm_head")):
            assert not p.requires_grad and p.grad is None, name
        else:
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name


def test_teacher_forced_bad_inputs():
    model = make_model("vanilla")
    feats, ids = _sequence()
    with pytest.raises(ValueError, match="features must be"):
        model.teacher_forced(feats[:, :, :-1], ids, ANCHORS, KEEP)
    with pytest.raises(ValueError, match="block_keep"):
        model.teacher_forced(feats, ids, ANCHORS, KEEP.long())
    with pytest.raises(ValueError, match="anchors must lie"):
        model.teacher_forced(feats, ids, ANCHORS + SEQ, KEEP)
