"""Shared pieces of the training / evaluation tests: a tiny target with learnable structure,
a fresh drafter for it, and a synthetic corpus (no downloads; seconds on 2 CPU cores)."""
from __future__ import annotations

import contextlib
import functools

import torch

from dspark_ext.drafters.dspark import DSparkConfig, DSparkDrafter
from dspark_ext.train import Example
from tiny_models import tiny_hf

VOCAB, HIDDEN, LAYERS = 64, 32, 3
MASK = VOCAB - 1
LAYER_IDS = [0, 1]


def chain_corpus(num: int, length: int, seed: int = 0, noise: float = 0.1):
    """Sequences of a sharp first-order Markov chain: x_{t+1} = perm[x_t] with probability
    1 - noise, else uniform (token MASK never occurs)."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(VOCAB - 1, generator=torch.Generator().manual_seed(1234))
    seqs = torch.empty(num, length, dtype=torch.int64)
    seqs[:, 0] = torch.randint(0, VOCAB - 1, (num,), generator=g)
    for t in range(1, length):
        rnd = torch.randint(0, VOCAB - 1, (num,), generator=g)
        keep = torch.rand(num, generator=g) >= noise
        seqs[:, t] = torch.where(keep, perm[seqs[:, t - 1]], rnd)
    return seqs


def examples(num: int = 32, length: int = 48, prompt: int = 4, seed: int = 0):
    seqs = chain_corpus(num, length, seed)
    return [Example(s.tolist(), [0] * prompt + [1] * (length - prompt)) for s in seqs]


@contextlib.contextmanager
def one_thread():
    """Run with one intra-op thread: on the shared 2-core machine two threads contend with
    the other process and run several times slower on these tiny shapes."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def random_target(seed: int = 0):
    return tiny_hf("qwen3", vocab=VOCAB, hidden=HIDDEN, layers=LAYERS, seed=seed)


@functools.lru_cache(maxsize=1)
def _trained_state():
    with one_thread():
        return _train_target()


def _train_target():
    model = tiny_hf("qwen3", vocab=VOCAB, hidden=HIDDEN, layers=LAYERS, seed=0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.05)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    data = chain_corpus(256, 32, seed=99)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        idx = torch.randint(0, data.shape[0], (16,), generator=g)
        batch = data[idx]
        out = model(input_ids=batch, labels=batch)
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    return {k: v.clone() for k, v in model.state_dict().items()}


def trained_target():
    """A tiny Qwen3 target trained (~2 s) on the chain corpus: sharp, learnable logits."""
    model = tiny_hf("qwen3", vocab=VOCAB, hidden=HIDDEN, layers=LAYERS, seed=0)
    model.load_state_dict(_trained_state())
    return model.eval()


def fresh_drafter(target, markov: bool = True, confidence: bool = True, block: int = 4,
                  seed: int = 0, num_anchors: int = 16) -> DSparkDrafter:
    cfg = DSparkConfig.for_target(
        target.config, block_size=block, num_hidden_layers=1, target_layer_ids=LAYER_IDS,
        mask_token_id=MASK, markov_rank=8 if markov else 0, enable_confidence_head=confidence,
        confidence_head_with_markov=confidence and markov, num_anchors=num_anchors)
    torch.manual_seed(seed)
    d = DSparkDrafter(cfg)
    d.init_from_target(target.get_input_embeddings().weight, target.get_output_embeddings().weight)
    return d
