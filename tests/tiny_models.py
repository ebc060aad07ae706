"""Tiny random models for the decoder tests, built in the test (no downloads)."""
from __future__ import annotations

import math

import torch
from torch import nn
import torch.nn.functional as F

from dspark_ext.targets.kv_cache import KVCache


def tiny_hf(family: str = "qwen3", vocab: int = 64, hidden: int = 32, layers: int = 3,
            heads: int = 4, kv_heads: int = 2, seed: int = 0, dtype=torch.float32,
            max_positions: int = 512, scale: float = 1.0):
    """A random Qwen3ForCausalLM / LlamaForCausalLM in eval mode. ``scale`` multiplies the
    LM head (sharper or flatter distributions)."""
    import transformers
    torch.manual_seed(seed)
    common = dict(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                  num_hidden_layers=layers, num_attention_heads=heads,
                  num_key_value_heads=kv_heads, max_position_embeddings=max_positions,
                  tie_word_embeddings=False, attn_implementation="sdpa")
    if family == "qwen3":
        cfg = transformers.Qwen3Config(head_dim=hidden // heads, **common)
        model = transformers.Qwen3ForCausalLM(cfg)
    elif family == "llama":
        cfg = transformers.LlamaConfig(**common)
        model = transformers.LlamaForCausalLM(cfg)
    else:
        raise ValueError(family)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.3)
        model.lm_head.weight.mul_(scale)
    return model.to(dtype).eval()


class TinyTorchLM(nn.Module):
    """A plain torch causal LM (pre-norm, MHA, RoPE-free learned positions) whose forward
    takes ``(tokens, positions, cache)`` and uses dspark_ext's KVCache: the shape of the
    README's "any torch model" example."""

    def __init__(self, vocab: int = 64, hidden: int = 32, layers: int = 2, heads: int = 4,
                 max_positions: int = 512, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.heads, self.hd = heads, hidden // heads
        self.embed = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_positions, hidden)
        self.qkv = nn.ModuleList(nn.Linear(hidden, 3 * hidden) for _ in range(layers))
        self.out = nn.ModuleList(nn.Linear(hidden, hidden) for _ in range(layers))
        self.mlp = nn.ModuleList(nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.GELU(),
                                               nn.Linear(2 * hidden, hidden))
                                 for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab, bias=False)
        with torch.no_grad():
            for p in self.parameters():
                if p.dim() > 1:
                    p.normal_(0, 0.3)

    def forward(self, tokens, positions, cache: KVCache):
        x = self.embed(tokens) + self.pos(positions)
        hidden = [x]
        b, n, _ = x.shape
        for i, (qkv, out, mlp) in enumerate(zip(self.qkv, self.out, self.mlp)):
            q, k, v = qkv(x).view(b, n, 3, self.heads, self.hd).permute(2, 0, 3, 1, 4)
            k_all, v_all, mask = cache.update(i, k, v)
            a = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=mask)
            x = x + out(a.transpose(1, 2).reshape(b, n, -1))
            x = x + mlp(x)
            hidden.append(x)
        return self.head(self.norm(x)), hidden

    def full_logits(self, tokens):
        """Logits of a whole sequence [B, L] without a cache (the tests' ground truth)."""
        cache = KVCache(tokens.shape[0], tokens.device)
        pos = cache.begin(tokens.shape[1])
        logits, _ = self(tokens, pos, cache)
        return logits
