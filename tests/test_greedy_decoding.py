"""Greedy speculative decoding with verify_greedy reproduces the target's own greedy decoding
token for token (design §3.1, §8), for drafts that are right, wrong, or partly right."""
import pytest
import torch

import dspark_ext


class TinyLM(torch.nn.Module):
    """A small causal model: embedding, GRU, vocabulary head."""

    def __init__(self, vocab=97, hidden=64, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = torch.nn.Embedding(vocab, hidden)
        self.rnn = torch.nn.GRU(hidden, hidden, batch_first=True)
        self.head = torch.nn.Linear(hidden, vocab)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g) * 0.5)

    def forward(self, tokens):  # [B, L] -> logits [B, L, V]
        return self.head(self.rnn(self.emb(tokens))[0])


def plain_greedy(model, prompt, steps):
    seq = prompt.clone()
    for _ in range(steps):
        nxt = model(seq)[:, -1].argmax(-1, keepdim=True)
        seq = torch.cat([seq, nxt], dim=1)
    return seq


def speculative_greedy(target, drafter, prompt, steps, k, dtype):
    seq = prompt.clone()
    rounds = 0
    while seq.shape[1] - prompt.shape[1] < steps:
        # Drafter proposes k tokens greedily (its own, different model).
        draft = seq.clone()
        for _ in range(k):
            draft = torch.cat([draft, drafter(draft)[:, -1].argmax(-1, keepdim=True)], dim=1)
        proposed = draft[:, seq.shape[1]:]
        # Target scores [last committed, drafts]: rows 0..k predict drafts 0..k-1 and the bonus.
        logits = target(draft)[:, seq.shape[1] - 1:].to(dtype)
        res = dspark_ext.verify_greedy(logits.contiguous(), proposed)
        n = int(res.num_emitted[0])
        seq = torch.cat([seq, res.out_tokens[:, :n]], dim=1)
        rounds += 1
    return seq[:, : prompt.shape[1] + steps], rounds


@pytest.mark.parametrize("k", [1, 4, 7])
@pytest.mark.parametrize("drafter_seed", [0, 1], ids=["perfect_drafter", "other_drafter"])
def test_speculative_greedy_equals_plain_greedy(k, drafter_seed):
    torch.manual_seed(0)
    target = TinyLM(seed=0).eval()
    drafter = TinyLM(seed=drafter_seed).eval()
    prompt = torch.randint(0, 97, (1, 5), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = plain_greedy(target, prompt, 40)
        got, rounds = speculative_greedy(target, drafter, prompt, 40, k, torch.float32)
    assert torch.equal(got, want)
    if drafter_seed == 0:
        assert rounds <= -(-40 // (k + 1)) + 1  # a perfect drafter is always fully accepted
