"""Qwen3-style building blocks of the drafter backbone (design §7): RMSNorm, rotary embedding,
attention whose keys/values come from [context ; block], SwiGLU MLP, decoder layer.

Module and parameter names follow DeepSpec's ``Qwen3DSparkModel`` so that its checkpoints
load unchanged (``layers.{i}.self_attn.q_proj.weight`` ...). The arithmetic follows
transformers' Qwen3 (RMSNorm in float32, RoPE tables in float32, rotate-half convention) so
that the same weights give the same numbers.

Attention never builds the key sequence itself: the caller hands a ``join`` function that turns
the block's own keys/values into the full key sequence (the decode path writes them into the
context cache, the training path concatenates them after the context), so both paths share
every projection and normalisation.
"""
from __future__ import annotations

from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...ops.linear import small_linear
from .config import DSparkConfig
from .fused import FusedLinear

__all__ = ["RMSNorm", "RotaryEmbedding", "DSparkAttention", "SwiGLUMLP", "DSparkDecoderLayer",
           "attend", "apply_rotary", "decode_linear"]

KVJoin = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]
# The decode path's store: the new keys/values [B, Hkv, S, D] of [context ; block] in, the
# layer's whole key/value sequence out (see ContextKVCache.write).
KVStore = Callable[[Tensor, Tensor], Tuple[Tensor, Tensor]]

_ACT = {"silu": F.silu, "relu": F.relu, "gelu": F.gelu,
        "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh")}


def decode_linear(x: Tensor, linear: nn.Linear) -> Tensor:
    """``linear(x)`` in the decode step: the few-row GEMM op (``ops.small_linear``), which
    beats BLAS at the block's 7-16 rows on a CPU. No autograd: training uses ``forward``."""
    return small_linear(x, linear.weight, linear.bias)


class RMSNorm(nn.Module):
    """y = w * x / rms(x), normalised in float32 and cast back (transformers' Qwen3RMSNorm)."""

    def __init__(self, size: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        x32 = x.to(torch.float32)
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x32.to(dtype)


class RotaryEmbedding(nn.Module):
    """cos/sin tables at arbitrary (per-row) absolute positions; 'default' and 'linear' RoPE.

    The inverse frequencies are a plain float32 attribute, not a buffer: ``model.to(bfloat16)``
    must not round them, and they are not part of a checkpoint (DeepSpec's are non-persistent).
    """

    def __init__(self, config: DSparkConfig):
        super().__init__()
        exponent = torch.arange(0, config.head_dim, 2, dtype=torch.int64, device="cpu")
        inv = 1.0 / (config.rope_theta ** (exponent.to(torch.float32) / config.head_dim))
        factor = config.rope_factor if config.rope_type == "linear" else 1.0
        self.inv_freq = inv / factor

    def forward(self, positions: Tensor, dtype: torch.dtype) -> Tuple[Tensor, Tensor]:
        """positions int64 [...] -> cos, sin [..., head_dim] in ``dtype`` (computed in float32)."""
        if self.inv_freq.device != positions.device:
            self.inv_freq = self.inv_freq.to(positions.device)
        freqs = positions.to(torch.float32)[..., None] * self.inv_freq
        emb = torch.cat([freqs, freqs], dim=-1)
        return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x [B, H, S, D], cos/sin [B, S, D] -> rotated x (rotate-half convention)."""
    cos, sin = cos[:, None], sin[:, None]
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
    """Grouped-query SDPA: q [B, H, Q, D], k/v [B, Hkv, S, D], boolean mask (True = attend)
    broadcastable to [B, 1, Q, S] -> [B, H, Q, D].

    A query that may attend to nothing gets a zero output (as flex attention gives DeepSpec's
    training path for dropped blocks) instead of SDPA's NaN.
    """
    b, h, nq, d = q.shape
    hkv = k.shape[1]
    group = h // hkv
    dead = ~mask.any(dim=-1, keepdim=True)  # [B, 1, Q|1, 1]
    safe = mask | dead
    if mask.shape[-2] == 1:
        # The mask does not depend on the query: fold each KV head's query heads into the
        # query axis, so K/V (the whole context cache) are read as they are, never repeated.
        qg = q.reshape(b, hkv, group * nq, d)
        out = F.scaled_dot_product_attention(qg, k, v, attn_mask=safe, scale=scale)
        out = out.reshape(b, h, nq, d)
    else:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=safe, scale=scale,
                                             enable_gqa=group > 1)
    return out.masked_fill(dead, 0.0)


class DSparkAttention(nn.Module):
    """Queries from the block only; keys/values from [context ; block] with k_norm and RoPE at
    the true positions (context K/V come precomputed through ``join``); no causal mask."""

    def __init__(self, config: DSparkConfig):
        super().__init__()
        d, hd = config.hidden_size, config.head_dim
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = config.num_key_value_heads
        self.head_dim = hd
        self.scale = hd ** -0.5
        bias = config.attention_bias
        self.q_proj = nn.Linear(d, self.num_heads * hd, bias=bias)
        self.k_proj = nn.Linear(d, self.num_kv_heads * hd, bias=bias)
        self.v_proj = nn.Linear(d, self.num_kv_heads * hd, bias=bias)
        self.o_proj = nn.Linear(self.num_heads * hd, d, bias=bias)
        self.q_norm = RMSNorm(hd, config.rms_norm_eps)
        self.k_norm = RMSNorm(hd, config.rms_norm_eps)
        self._qkv = FusedLinear()

    def _heads(self, x: Tensor, n: int) -> Tensor:
        b, s, _ = x.shape
        return x.view(b, s, n, self.head_dim)

    def key_values(self, x: Tensor, cos: Tensor, sin: Tensor) -> Tuple[Tensor, Tensor]:
        """x [B, S, d] (context or block hidden) -> k, v [B, Hkv, S, D], k normed and rotated."""
        k = self.k_norm(self._heads(self.k_proj(x), self.num_kv_heads)).transpose(1, 2)
        v = self._heads(self.v_proj(x), self.num_kv_heads).transpose(1, 2)
        return apply_rotary(k, cos, sin), v

    def refresh_fused(self) -> None:
        """Rebuild the fused Q/K/V weight if a part changed (outside :meth:`decode`, so that
        the decode step has no data-dependent Python and compiles / captures whole)."""
        self._qkv.refresh([self.q_proj.weight, self.k_proj.weight, self.v_proj.weight],
                          [self.q_proj.bias, self.k_proj.bias, self.v_proj.bias])

    def decode(self, seq: Tensor, n_ctx: int, cos: Tensor, sin: Tensor, store: KVStore,
               mask: Tensor) -> Tensor:
        """The decode step: ``seq`` [B, n_ctx + Q, d] is [new context ; normed block]. One fused
        Q/K/V GEMM over all of it; queries of the block only; the new keys/values go to
        ``store``. The same numbers as :meth:`key_values` + :meth:`forward`, one pass."""
        b, s, _ = seq.shape
        h, hkv, hd = self.num_heads, self.num_kv_heads, self.head_dim
        qkv = small_linear(seq, *self._qkv.current())
        q = qkv[:, n_ctx:, : h * hd].view(b, s - n_ctx, h, hd)
        k = qkv[:, :, h * hd: (h + hkv) * hd].view(b, s, hkv, hd)
        v = qkv[:, :, (h + hkv) * hd:].view(b, s, hkv, hd)
        q = apply_rotary(self.q_norm(q).transpose(1, 2), cos[:, n_ctx:], sin[:, n_ctx:])
        k = apply_rotary(self.k_norm(k).transpose(1, 2), cos, sin)
        keys, values = store(k, v.transpose(1, 2))
        out = attend(q, keys, values, mask, self.scale)  # [B, H, Q, D]
        return decode_linear(out.transpose(1, 2).reshape(b, s - n_ctx, h * hd), self.o_proj)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, join: KVJoin, mask: Tensor) -> Tensor:
        q = self.q_norm(self._heads(self.q_proj(x), self.num_heads)).transpose(1, 2)
        q = apply_rotary(q, cos, sin)
        k, v = join(*self.key_values(x, cos, sin))
        out = attend(q, k, v, mask, self.scale)  # [B, H, Q, D]
        b, _, nq, _ = out.shape
        return self.o_proj(out.transpose(1, 2).reshape(b, nq, self.num_heads * self.head_dim))


class SwiGLUMLP(nn.Module):
    """down(act(gate(x)) * up(x)) (Qwen3MLP)."""

    def __init__(self, config: DSparkConfig):
        super().__init__()
        d, m = config.hidden_size, config.intermediate_size
        self.gate_proj = nn.Linear(d, m, bias=False)
        self.up_proj = nn.Linear(d, m, bias=False)
        self.down_proj = nn.Linear(m, d, bias=False)
        self.act = _ACT[config.hidden_act]
        self._gate_up = FusedLinear()

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))

    def refresh_fused(self) -> None:
        self._gate_up.refresh([self.gate_proj.weight, self.up_proj.weight], [None, None])

    def decode(self, x: Tensor) -> Tensor:
        """:meth:`forward` with gate and up in one GEMM (after :meth:`refresh_fused`)."""
        gate, up = small_linear(x, self._gate_up.current()[0], None).chunk(2, dim=-1)
        return decode_linear(self.act(gate) * up, self.down_proj)


class DSparkDecoderLayer(nn.Module):
    """Pre-norm residual layer: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: DSparkConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = DSparkAttention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.mlp = SwiGLUMLP(config)

    def context_key_values(self, ctx: Tensor, cos: Tensor, sin: Tensor) -> Tuple[Tensor, Tensor]:
        """The K/V this layer derives from projected context ``ctx`` [B, S, d] (the context is
        not transformed by the layers, so its K/V can be cached once per token)."""
        return self.self_attn.key_values(ctx, cos, sin)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, join: KVJoin, mask: Tensor) -> Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, join, mask)
        return x + self.mlp(self.post_attention_layernorm(x))

    def refresh_fused(self) -> None:
        """Bring the fused projections up to date with the parameters (once per draft call,
        before :meth:`decode`)."""
        self.self_attn.refresh_fused()
        self.mlp.refresh_fused()

    def decode(self, x: Tensor, ctx: Optional[Tensor], cos: Tensor, sin: Tensor,
               store: KVStore, mask: Tensor) -> Tensor:
        """One decode step of block ``x`` [B, Q, d] with the newly committed context ``ctx``
        [B, n, d] (projected, not normed by this layer: its K/V are the context's, as in
        :meth:`context_key_values`) or None; cos/sin cover [context ; block]."""
        h = self.input_layernorm(x)
        n = 0 if ctx is None else ctx.shape[1]
        seq = h if ctx is None else torch.cat([ctx.to(h.dtype), h], dim=1)
        x = x + self.self_attn.decode(seq, n, cos, sin, store, mask)
        return x + self.mlp.decode(self.post_attention_layernorm(x))
