"""Pure-PyTorch float64 reference of the DSpark / DFlash drafter (design §4, §7): the ground truth
of ``dspark_ext.drafters.dspark.DSparkDrafter``'s tests.

Written from the definitions, independently of the module code: no cache, no batching, no
masks. For one request it recomputes from scratch, from a plain state dict (DeepSpec's tensor
names) and a :class:`DSparkConfig`:

* ctx_i = hidden_norm(fc(features_i)) for every committed token i (positions p_i);
* block = embed([anchor, mask x (K-1)]) at positions anchor_pos .. anchor_pos + K - 1;
* every layer: x += o(attention(q = block, keys/values = [ctx ; block])) with q/k RMS-normed
  per head and rotated at their positions, every query seeing every key; x += mlp(norm(x));
* hidden = norm(x), base logits = lm_head(hidden);
* the Markov head and the confidence head through :func:`dspark_ext.reference.markov.markov_sample`
  (DSpark), or independent per-position draws of the base logits with the draft stream of
  :mod:`dspark_ext.ops.sampling` (DFlash), drawn by :func:`dspark_ext.reference.rejection_sample`.
"""
from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Tuple

import torch
from torch import Tensor

__all__ = ["ReferenceDraft", "reference_backbone", "reference_context_kv", "reference_draft"]

F64 = torch.float64


class ReferenceDraft(NamedTuple):
    hidden: Tensor                      # float64 [n, d] norm(h) of the first n block slots
    base_logits: Tensor                 # float64 [n, V]
    draft_tokens: Tensor                # int64 [n]
    draft_logits: Tensor                # float64 [n, V]
    confidence_logits: Optional[Tensor]  # float64 [n] or None
    margin: Optional[Tensor]            # float64 [n]: sampling-key gap (DSpark), else None
    choice: Optional[Tensor]            # int64 [n]: sampler's arg-max (teacher mode: != tokens)


def _w(state: Dict[str, Tensor], name: str) -> Tensor:
    return state[name].detach().to("cpu", F64)


def _rms_norm(x: Tensor, weight: Tensor, eps: float) -> Tensor:
    return weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def _rope(x: Tensor, positions: Tensor, config) -> Tensor:
    """x [S, H, D] rotated at integer positions [S] (rotate-half pairs (j, j + D/2))."""
    d = x.shape[-1]
    inv = 1.0 / config.rope_theta ** (torch.arange(0, d, 2, dtype=F64) / d)
    if config.rope_type == "linear":
        inv = inv / config.rope_factor
    ang = positions.to(F64)[:, None] * inv[None, :]          # [S, D/2]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    x1, x2 = x[..., : d // 2], x[..., d // 2:]
    return torch.cat([x1 * cos - x2 * sin, x2 * cos + x1 * sin], dim=-1)


def _act(name: str, x: Tensor) -> Tensor:
    if name == "silu":
        return x * torch.sigmoid(x)
    if name == "relu":
        return x.clamp_min(0)
    if name == "gelu":
        return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))
    return 0.5 * x * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def _linear(state, name: str, x: Tensor) -> Tensor:
    y = x @ _w(state, name + ".weight").T
    if name + ".bias" in state:
        y = y + _w(state, name + ".bias")
    return y


def _key_values(state, config, i: int, x: Tensor, positions: Tensor) -> Tuple[Tensor, Tensor]:
    """Layer i's keys (normed, rotated) and values of hidden rows x [S, d] -> [S, Hkv, D]."""
    p, hkv, hd = f"layers.{i}.self_attn.", config.num_key_value_heads, config.head_dim
    k = _linear(state, p + "k_proj", x).view(-1, hkv, hd)
    k = _rope(_rms_norm(k, _w(state, p + "k_norm.weight"), config.rms_norm_eps), positions, config)
    v = _linear(state, p + "v_proj", x).view(-1, hkv, hd)
    return k, v


def _context(state, config, features: Tensor) -> Tensor:
    return _rms_norm(features.to(F64) @ _w(state, "fc.weight").T, _w(state, "hidden_norm.weight"),
                     config.rms_norm_eps)


def reference_context_kv(state, config, features: Tensor,
                         positions: Tensor) -> List[Tuple[Tensor, Tensor]]:
    """Every layer's context keys/values [Hkv, L, D] from features [L, F] at positions [L]."""
    ctx = _context(state, config, features)
    return [tuple(t.transpose(0, 1) for t in _key_values(state, config, i, ctx, positions))
            for i in range(config.num_hidden_layers)]


def reference_backbone(state, config, features: Tensor, positions: Tensor, anchor: int,
                       anchor_position: int) -> Tuple[Tensor, Tensor]:
    """hidden [K, d] and base logits [K, V] (float64) of one request's full block."""
    eps, k_blk = config.rms_norm_eps, config.block_size
    h, hkv, hd = config.num_attention_heads, config.num_key_value_heads, config.head_dim
    ctx = _context(state, config, features)
    ids = torch.tensor([anchor] + [config.mask_token_id] * (k_blk - 1))
    x = _w(state, "embed_tokens.weight")[ids]
    blk_pos = anchor_position + torch.arange(k_blk)
    for i in range(config.num_hidden_layers):
        p = f"layers.{i}."
        a = _rms_norm(x, _w(state, p + "input_layernorm.weight"), eps)
        q = _linear(state, p + "self_attn.q_proj", a).view(k_blk, h, hd)
        q = _rope(_rms_norm(q, _w(state, p + "self_attn.q_norm.weight"), eps), blk_pos, config)
        kc, vc = _key_values(state, config, i, ctx, positions)
        kb, vb = _key_values(state, config, i, a, blk_pos)
        keys, vals = torch.cat([kc, kb]), torch.cat([vc, vb])          # [L + K, Hkv, D]
        group = h // hkv
        keys, vals = keys.repeat_interleave(group, 1), vals.repeat_interleave(group, 1)
        scores = torch.einsum("qhd,shd->hqs", q, keys) / math.sqrt(hd)
        att = torch.einsum("hqs,shd->qhd", torch.softmax(scores, dim=-1), vals)
        x = x + _linear(state, p + "self_attn.o_proj", att.reshape(k_blk, h * hd))
        m = _rms_norm(x, _w(state, p + "post_attention_layernorm.weight"), eps)
        gate, up = _linear(state, p + "mlp.gate_proj", m), _linear(state, p + "mlp.up_proj", m)
        x = x + _linear(state, p + "mlp.down_proj", _act(config.hidden_act, gate) * up)
    hidden = _rms_norm(x, _w(state, "norm.weight"), eps)
    return hidden, hidden @ _w(state, "lm_head.weight").T


def reference_draft(state, config, features: Tensor, positions: Tensor, anchor: int,
                    anchor_position: int, num_tokens: int, temperature: float, seed: int,
                    offset: int, teacher_tokens: Optional[Tensor] = None) -> ReferenceDraft:
    """The drafter's full output for one request with context ``features`` [L, F] at
    ``positions`` [L]. ``teacher_tokens`` [n]: DSpark's teacher-forced mode (given tokens)."""
    hidden, base = reference_backbone(state, config, features, positions, anchor,
                                      anchor_position)
    hidden, base = hidden[:num_tokens], base[:num_tokens]
    row = lambda v, dt: torch.tensor([v], dtype=dt)  # noqa: E731
    temp, seed_t, off = row(temperature, torch.float32), row(seed, torch.int64), row(offset,
                                                                                     torch.int64)
    conf_w = conf_b = None
    if config.enable_confidence_head:
        conf_w, conf_b = _w(state, "confidence_head.proj.weight"), _w(state,
                                                                       "confidence_head.proj.bias")
    if config.markov_rank > 0:
        from .markov import markov_sample
        kind = config.markov_head_type
        extra = {"gated": "markov_head.gate_proj", "rnn": "markov_head.joint_proj"}.get(kind)
        head_w, head_b = (None, None) if extra is None else (_w(state, extra + ".weight"),
                                                             _w(state, extra + ".bias"))
        ref = markov_sample(
            base[None], torch.tensor([anchor]), _w(state, "markov_head.markov_w1.weight"),
            _w(state, "markov_head.markov_w2.weight"), temp, seed_t, off, head=kind,
            hidden=hidden[None], head_weight=head_w, head_bias=head_b,
            conf_weight=conf_w, conf_bias=conf_b,
            teacher_tokens=None if teacher_tokens is None else teacher_tokens[None])
        conf = None if ref.confidence_logits is None else ref.confidence_logits[0]
        return ReferenceDraft(hidden, base, ref.draft_tokens[0], ref.draft_logits[0], conf,
                              ref.margin[0], ref.choice[0])
    from .verify import rejection_sample
    from ..ops.sampling import draft_offset
    empty = torch.empty(1, 0, dtype=torch.int64)
    tokens = torch.stack([
        rejection_sample(base[k][None, None], empty, None, temp, seed_t,
                         draft_offset(off, k)).out_tokens[0, 0] for k in range(num_tokens)])
    conf = None if conf_w is None else hidden @ conf_w.reshape(-1) + conf_b.reshape(())
    return ReferenceDraft(hidden, base, tokens, base, conf, None, None)
