"""The teacher-forced training forward of the drafter (DeepSpec's ``Qwen3DSparkModel.forward``).

One sequence of ``S`` committed tokens carries ``N`` anchor blocks; all of them run in one
backbone pass over the query sequence [block_0 ; ... ; block_{N-1}] (N*K queries) against the
key sequence [context (S) ; all blocks (N*K)], with one boolean mask
(:func:`block_attention_mask`): block n sees context positions ``< anchors[n]`` and its own
block only; a dropped block (``block_keep`` False) sees nothing (zero attention output, as
DeepSpec's flex attention gives). Slot k of the block at anchor p predicts the token at
p + k + 1; the Markov head is applied with the *true* previous tokens. Everything is plain,
differentiable torch.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import Tensor

__all__ = ["TeacherForced", "block_attention_mask", "block_targets", "teacher_forced"]


class TeacherForced(NamedTuple):
    draft_logits: Tensor                 # [B, N, K, V] Markov-corrected (= base without head)
    base_logits: Tensor                  # [B, N, K, V] lm_head(norm(h))
    confidence_logits: Optional[Tensor]  # float32 [B, N, K] or None
    hidden: Tensor                       # [B, N, K, d] norm(h)
    target_ids: Tensor                   # int64 [B, N, K] token at anchor + k + 1
    label_mask: Tensor                   # bool [B, N, K] supervised positions (contiguous prefix)
    prev_tokens: Tensor                  # int64 [B, N, K] x_{k-1} (anchor token first)


def block_attention_mask(anchors: Tensor, block_keep: Tensor, seq_len: int,
                         block_size: int) -> Tensor:
    """Boolean mask [B, 1, N*K, S + N*K] (True = may attend) of the training forward.

    Query q = n*K + k (slot k of block n) may attend to context key j < S iff
    ``j < anchors[b, n]``, and to block key S + m*K + i iff m == n; nothing at all when
    ``block_keep[b, n]`` is False.
    """
    b, n = anchors.shape
    k = block_size
    device = anchors.device
    q_block = torch.arange(n * k, device=device) // k                 # [NK]
    q_anchor = anchors[:, q_block]                                     # [B, NK]
    sees_ctx = torch.arange(seq_len, device=device)[None, None, :] < q_anchor[:, :, None]
    sees_blk = (q_block[:, None] == q_block[None, :]).expand(b, -1, -1)
    mask = torch.cat([sees_ctx, sees_blk], dim=-1) & block_keep[:, q_block][:, :, None]
    return mask[:, None]


def block_targets(input_ids: Tensor, anchors: Tensor, block_keep: Tensor, block_size: int,
                  loss_mask: Optional[Tensor] = None):
    """(target_ids, label_mask, prev_tokens) [B, N, K], as DeepSpec builds them: target = token
    at anchor + k + 1 (clamped inside the sequence), supervised while inside the sequence, in
    ``loss_mask``, in a kept block, and every earlier slot is (contiguous prefix)."""
    b, s = input_ids.shape
    n = anchors.shape[1]
    steps = torch.arange(1, block_size + 1, device=input_ids.device)
    label_idx = anchors[:, :, None] + steps                             # [B, N, K]
    safe = torch.where(block_keep[:, :, None], label_idx.clamp(max=s - 1),
                       torch.zeros_like(label_idx))
    flat = safe.reshape(b, n * block_size)
    target_ids = input_ids.gather(1, flat).view(b, n, block_size)
    ok = (label_idx < s) & block_keep[:, :, None]
    if loss_mask is not None:
        ok = ok & (loss_mask.gather(1, flat).view(b, n, block_size) > 0.5)
    label_mask = ok.to(torch.int32).cumprod(dim=-1).bool()
    anchor_tok = input_ids.gather(1, anchors)
    prev = torch.cat([anchor_tok[:, :, None], target_ids[:, :, :-1]], dim=-1)
    return target_ids, label_mask, prev


def _check(features: Tensor, input_ids: Tensor, anchors: Tensor, block_keep: Tensor,
           loss_mask: Optional[Tensor], feature_size: int) -> None:
    if input_ids.dim() != 2 or input_ids.dtype != torch.int64:
        raise ValueError(f"input_ids must be int64 [B, S], got {input_ids.dtype} "
                         f"{tuple(input_ids.shape)}")
    b, s = input_ids.shape
    if tuple(features.shape) != (b, s, feature_size):
        raise ValueError(f"features must be [B, S, F] = [{b}, {s}, {feature_size}], got "
                         f"{tuple(features.shape)}")
    if anchors.dim() != 2 or anchors.shape[0] != b or anchors.dtype != torch.int64:
        raise ValueError(f"anchors must be int64 [B = {b}, N], got {anchors.dtype} "
                         f"{tuple(anchors.shape)}")
    if tuple(block_keep.shape) != tuple(anchors.shape) or block_keep.dtype != torch.bool:
        raise ValueError(f"block_keep must be bool with the shape of anchors "
                         f"{tuple(anchors.shape)}, got {block_keep.dtype} "
                         f"{tuple(block_keep.shape)}")
    if loss_mask is not None and tuple(loss_mask.shape) != (b, s):
        raise ValueError(f"loss_mask must be [B, S] = [{b}, {s}], got {tuple(loss_mask.shape)}")
    if anchors.numel() and bool(((anchors < 0) | (anchors >= s)).any()):
        raise ValueError(f"anchors must lie in [0, S = {s})")


def teacher_forced(model, features: Tensor, input_ids: Tensor, anchors: Tensor,
                   block_keep: Tensor, loss_mask: Optional[Tensor] = None) -> TeacherForced:
    """All anchor blocks of ``input_ids`` [B, S] in one differentiable forward.

    ``features`` [B, S, F]: the target's hidden states of ``target_layer_ids`` for every token;
    ``anchors`` int64 [B, N] (positions in [0, S)), ``block_keep`` bool [B, N];
    ``loss_mask`` [B, S] (optional; 1 = supervised token). Returns :class:`TeacherForced`.
    """
    cfg = model.config
    _check(features, input_ids, anchors, block_keep, loss_mask, cfg.feature_size)
    b, s = input_ids.shape
    n, k = anchors.shape[1], cfg.block_size
    device = input_ids.device

    ctx = model.project_context(features)                               # [B, S, d]
    anchor_tok = torch.where(block_keep, input_ids.gather(1, anchors),
                             torch.full_like(anchors, cfg.mask_token_id))
    x = model.embed_tokens(model.block_input_ids(anchor_tok, k).view(b, n * k))
    blk_pos = (anchors[:, :, None] + torch.arange(k, device=device)).view(b, n * k)
    ctx_pos = torch.arange(s, device=device).expand(b, s)
    ctx_cos, ctx_sin = model.rotary_emb(ctx_pos, ctx.dtype)
    mask = block_attention_mask(anchors, block_keep, s, k)

    def join_for(layer):
        ck, cv = layer.context_key_values(ctx, ctx_cos, ctx_sin)
        return lambda bk, bv: (torch.cat([ck, bk], dim=2), torch.cat([cv, bv], dim=2))

    hidden = model.run_layers(x, blk_pos, [join_for(layer) for layer in model.layers], mask)
    hidden = hidden.view(b, n, k, -1)
    base = model.lm_head(hidden)
    target_ids, label_mask, prev = block_targets(input_ids, anchors, block_keep, k, loss_mask)
    draft = base
    if model.markov_head is not None:
        draft = model.markov_head.teacher_forced_logits(base, prev, hidden)
    conf = None
    if model.confidence_head is not None:
        e = model.markov_head.prev_embeddings(prev) if cfg.confidence_uses_markov else None
        conf = model.confidence_head(hidden, e)
    return TeacherForced(draft, base, conf, hidden, target_ids, label_mask, prev)
