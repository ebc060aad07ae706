"""The DSpark drafter on CUDA (decode path and training forward) against the float64
reference; skipped without a GPU."""
import pytest
import torch

from dspark_ext.drafters.base import ContextUpdate, DraftBlock

from dspark_cases import BLOCK, VOCAB, History, check_block, make_model, row_args

pytestmark = pytest.mark.cuda
CUDA_ATOL = 1e-3


def _cuda(t):
    return None if t is None else t.cuda()


@pytest.mark.parametrize("variant", ["dflash_conf", "vanilla_conf_markov", "gated_conf",
                                     "rnn_conf_markov"])
def test_draft_on_cuda_matches_reference(variant):
    model = make_model(variant).cuda()
    hist = History(3)
    model.reset(3, "cuda")
    gen = torch.Generator().manual_seed(5)
    for rnd, counts in enumerate([[5, 3, 1], [2, 0, 3], [0, 4, 1]]):
        model.update(ContextUpdate(*[_cuda(t) for t in hist.update(counts)]))
        anchor = torch.randint(0, VOCAB, (3,), generator=gen)
        t, s, o = row_args(3, 0.0 if rnd != 2 else 0.9, offset=rnd)
        out = model.draft(anchor.cuda(), hist.lengths.cuda(), BLOCK, t.cuda(), s.cuda(),
                          o.cuda())
        out = DraftBlock(*[None if x is None else x.cpu() for x in out])
        check_block(model, hist, out, anchor, BLOCK, t, s, o, atol=CUDA_ATOL)
    model.select_rows(torch.tensor([2, 0], device="cuda"))
    assert model.cache.lengths.tolist() == [len(hist.positions[2]), len(hist.positions[0])]


def test_bf16_draft_on_cuda_runs_and_teacher_forced_matches_cpu():
    model = make_model("rnn_conf_markov")
    gpu = make_model("rnn_conf_markov").cuda()
    feats = torch.randn(2, 16, model.config.feature_size)
    ids = torch.randint(0, VOCAB - 1, (2, 16))
    anchors = torch.tensor([[0, 6], [3, 9]])
    keep = torch.tensor([[True, False], [True, True]])
    cpu_tf = model.teacher_forced(feats, ids, anchors, keep)
    gpu_tf = gpu.teacher_forced(feats.cuda(), ids.cuda(), anchors.cuda(), keep.cuda())
    torch.testing.assert_close(gpu_tf.draft_logits.cpu(), cpu_tf.draft_logits, atol=CUDA_ATOL,
                               rtol=CUDA_ATOL)
    bf16 = gpu.to(torch.bfloat16)
    bf16.reset(2, "cuda")
    hist = History(2)
    bf16.update(ContextUpdate(*[_cuda(t) for t in hist.update([4, 2])]))
    t, s, o = row_args(2, 0.8)
    out = bf16.draft(torch.tensor([1, 2], device="cuda"), hist.lengths.cuda(), BLOCK, t.cuda(),
                     s.cuda(), o.cuda())
    assert out.draft_logits.dtype == torch.bfloat16
    assert ((out.draft_tokens >= 0) & (out.draft_tokens < VOCAB)).all()
