"""Tiny random DSpark / DFlash drafters and ragged decoding histories for the drafter tests."""
from __future__ import annotations

from typing import Dict, List

import torch

from dspark_ext.drafters.base import ContextUpdate
from dspark_ext.drafters.dspark import DSparkConfig, DSparkDrafter
from dspark_ext.reference_drafter import reference_draft

VOCAB, HIDDEN, BLOCK = 96, 32, 4
TARGET_LAYERS = [-1, 1]  # of a 4-layer target: the embedding output and layer 1
FEATURES = len(TARGET_LAYERS) * HIDDEN
ATOL = 2e-4
MARGIN = 1e-3  # tokens are compared where the two best sampling keys are this far apart

# name -> (markov_rank, markov_head_type, enable_confidence_head, confidence_head_with_markov)
VARIANTS: Dict[str, tuple] = {
    "dflash": (0, None, False, False),
    "dflash_conf": (0, None, True, False),
    "vanilla": (8, "vanilla", False, False),
    "vanilla_conf_markov": (8, "vanilla", True, True),
    "gated_conf": (8, "gated", True, False),
    "rnn_conf_markov": (8, "rnn", True, True),
}


def make_config(variant: str = "vanilla_conf_markov", **overrides) -> DSparkConfig:
    rank, head, conf, with_markov = VARIANTS[variant]
    fields = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=64,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                  num_hidden_layers=2, num_target_layers=4, target_layer_ids=TARGET_LAYERS,
                  block_size=BLOCK, mask_token_id=VOCAB - 1, rope_theta=1000.0,
                  markov_rank=rank, markov_head_type=head, enable_confidence_head=conf,
                  confidence_head_with_markov=with_markov)
    fields.update(overrides)
    return DSparkConfig(**fields)


def randomize(model: DSparkDrafter, seed: int = 0) -> DSparkDrafter:
    """Weights large enough that logits are far from ties (std 0.02 would make every token
    nearly equally likely); norm weights away from 1 so a missing norm shows."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif name.endswith("bias"):
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p.shape[-1] if "markov_w1" not in name and "embed" not in name else 1
                p.copy_(torch.randn(p.shape, generator=gen) * (1.5 / fan_in ** 0.5))
    return model


def make_model(variant: str = "vanilla_conf_markov", seed: int = 0, **overrides):
    return randomize(DSparkDrafter(make_config(variant, **overrides)), seed)


class History:
    """Every row's committed context (features, positions), fed through ragged updates."""

    def __init__(self, batch: int, seed: int = 1):
        self.gen = torch.Generator().manual_seed(seed)
        self.features: List[torch.Tensor] = [torch.zeros(0, FEATURES) for _ in range(batch)]
        self.positions: List[torch.Tensor] = [torch.zeros(0, dtype=torch.int64)
                                              for _ in range(batch)]

    @property
    def lengths(self) -> torch.Tensor:
        return torch.tensor([len(p) for p in self.positions], dtype=torch.int64)

    def update(self, counts: List[int]) -> ContextUpdate:
        """A ContextUpdate with counts[b] new tokens per row (padding filled with NaN and
        garbage positions, which the drafter must ignore)."""
        n = max(counts)
        batch = len(counts)
        feats = torch.full((batch, n, FEATURES), float("nan"))
        pos = torch.full((batch, n), 10 ** 6, dtype=torch.int64)
        tokens = torch.full((batch, n), -7, dtype=torch.int64)
        for b, c in enumerate(counts):
            start = len(self.positions[b])
            f = torch.randn(c, FEATURES, generator=self.gen)
            p = torch.arange(start, start + c)
            feats[b, :c], pos[b, :c] = f, p
            tokens[b, :c] = torch.randint(0, VOCAB, (c,), generator=self.gen)
            self.features[b] = torch.cat([self.features[b], f])
            self.positions[b] = torch.cat([self.positions[b], p])
        return ContextUpdate(tokens, torch.tensor(counts, dtype=torch.int64), pos, feats)

    def select(self, rows: List[int]) -> None:
        self.features = [self.features[r] for r in rows]
        self.positions = [self.positions[r] for r in rows]


def row_args(batch: int, temperature: float = 0.0, seed0: int = 11, offset: int = 3):
    return (torch.full((batch,), temperature, dtype=torch.float32),
            seed0 + torch.arange(batch, dtype=torch.int64),
            torch.full((batch,), offset, dtype=torch.int64))



def state_of(model):
    return dict(model.state_dict())


def check_block(model, hist, out, anchor, num_tokens, temperature, seed, offset, atol=ATOL):
    """Every row of DraftBlock ``out`` (CPU tensors) equals the reference recomputation of
    that row."""
    cfg, state = model.config, state_of(model)
    for b in range(len(anchor)):
        ref = reference_draft(state, cfg, hist.features[b], hist.positions[b], int(anchor[b]),
                              len(hist.positions[b]), num_tokens, float(temperature[b]),
                              int(seed[b]), int(offset[b]),
                              teacher_tokens=out.draft_tokens[b] if cfg.markov_rank else None)
        torch.testing.assert_close(out.hidden[b].double(), ref.hidden, atol=atol, rtol=atol)
        torch.testing.assert_close(out.base_logits[b].double(), ref.base_logits, atol=atol,
                                   rtol=atol)
        torch.testing.assert_close(out.draft_logits[b].double(), ref.draft_logits, atol=atol,
                                   rtol=atol)
        if cfg.enable_confidence_head:
            torch.testing.assert_close(out.confidence_logits[b].double(), ref.confidence_logits,
                                       atol=atol, rtol=atol)
        else:
            assert out.confidence_logits is None
        if cfg.markov_rank:
            clear = ref.margin > MARGIN
            assert clear.float().mean() > 0.5
            assert torch.equal(out.draft_tokens[b][clear], ref.choice[clear])
        elif float(temperature[b]) == 0.0:
            assert torch.equal(out.draft_tokens[b], ref.draft_tokens)
