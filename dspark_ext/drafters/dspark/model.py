"""DSparkDrafter: the DSpark / DFlash drafter (design §4, §7) as a torch module implementing the
:class:`dspark_ext.drafters.base.Drafter` protocol.

Decoding round (what :meth:`draft` computes for every row b at once):

* block input: embed([anchor, mask x (K-1)]) at positions anchor_pos .. anchor_pos + K - 1
  (K = ``block_size``; the full trained block always runs, ``gamma`` only truncates the
  result: the block is bidirectional, so a shorter block would change every position's hidden
  state into one the model never saw in training);
* every layer attends from the block to [row b's cached context K/V ; the block's own K/V];
* hidden = norm(h), base logits = lm_head(hidden); then the Markov head's fused sampling op
  (DSpark) or independent per-position sampling of the base logits (DFlash).

Context: :meth:`update` projects only the newly committed tokens (ctx = hidden_norm(fc(features)))
and appends each layer's K/V of them to :class:`ContextKVCache`; nothing is ever recomputed.
"""
from __future__ import annotations

import contextlib
from typing import List, Optional

import torch
from torch import Tensor, nn

from ...ops.markov import MarkovTopkResult, markov_sample
from ...profiling import phase
from ...ops.sampling import sample_draft
from ..base import ContextUpdate, DraftBlock, concat_ragged
from .config import DSparkConfig
from .context_cache import ContextKVCache
from .heads import ConfidenceHead, MarkovHead
from .layers import DSparkDecoderLayer, RMSNorm, RotaryEmbedding, decode_linear

__all__ = ["DSparkDrafter"]


def _check_vector(name: str, t: Tensor, batch: int, dtype: torch.dtype, device) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a tensor, got {type(t).__name__}")
    if t.dim() != 1 or t.shape[0] != batch:
        raise ValueError(f"{name} must be 1-D [B] = [{batch}], got shape {tuple(t.shape)}")
    if t.dtype != dtype:
        raise ValueError(f"{name} must be {dtype}, got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but the drafter's cache is on {device}")


class DSparkDrafter(nn.Module):
    """DSpark drafter (``markov_rank > 0``) or the DFlash baseline (``markov_rank == 0``).

    Parameter names are DeepSpec's ``Qwen3DSparkModel`` state-dict keys (design §7).
    """

    def __init__(self, config: DSparkConfig, dtype: Optional[torch.dtype] = None,
                 device=None):
        super().__init__()
        self.config = config
        d, v = config.hidden_size, config.vocab_size
        building = torch.device(device) if device is not None else contextlib.nullcontext()
        with building:
            self.embed_tokens = nn.Embedding(v, d)
            self.layers = nn.ModuleList(DSparkDecoderLayer(config)
                                        for _ in range(config.num_hidden_layers))
            self.norm = RMSNorm(d, config.rms_norm_eps)
            self.fc = nn.Linear(config.feature_size, d, bias=False)
            self.hidden_norm = RMSNorm(d, config.rms_norm_eps)
            self.lm_head = nn.Linear(d, v, bias=False)
            self.markov_head = MarkovHead(config) if config.has_markov_head else None
            self.confidence_head = (ConfidenceHead(config) if config.enable_confidence_head
                                    else None)
        self.rotary_emb = RotaryEmbedding(config)
        if self.device.type != "meta":  # checkpoint loading builds on meta, then assigns
            self.reset_parameters()
        if dtype is not None:
            self.to(dtype=dtype)
        self.cache = ContextKVCache(config.num_hidden_layers, config.num_key_value_heads,
                                    config.head_dim, reserve_tail=config.block_size)
        # (features, counts, positions) of each update since the last draft, applied by the
        # next draft (or flush_context).
        self._pending: list = []
        self._steps: Optional[Tensor] = None

    # ------------------------------------------------------------------ protocol attributes
    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    @property
    def target_layer_ids(self) -> List[int]:
        return list(self.config.target_layer_ids)

    @property
    def target_hidden_size(self) -> int:
        """Width of each target feature: ``fc`` projects len(target_layer_ids) of them."""
        return self.config.hidden_size

    @property
    def max_draft(self) -> int:
        return self.config.block_size

    @property
    def block_size(self) -> int:
        return self.config.block_size

    @property
    def dtype(self) -> torch.dtype:
        return self.fc.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    # ------------------------------------------------------------------ weights
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """transformers-style init: normal(0, initializer_range) weights, zero biases, unit
        norms (the embedding and LM head are normally overwritten by :meth:`init_from_target`)."""
        std = self.config.initializer_range
        for m in self.modules():
            if isinstance(m, (nn.Linear, nn.Embedding)):
                m.weight.normal_(0.0, std)
                if getattr(m, "bias", None) is not None:
                    m.bias.zero_()
            elif isinstance(m, RMSNorm):
                m.weight.fill_(1.0)

    @torch.no_grad()
    def init_from_target(self, embed_weight: Tensor, lm_head_weight: Tensor,
                         freeze: bool = True) -> None:
        """Copy the target's token embedding [V, d] and LM head [V, d]; frozen by default."""
        for name, src, dst in (("embed_weight", embed_weight, self.embed_tokens.weight),
                               ("lm_head_weight", lm_head_weight, self.lm_head.weight)):
            if tuple(src.shape) != tuple(dst.shape):
                raise ValueError(f"{name} must be {tuple(dst.shape)} [vocab_size, hidden_size], "
                                 f"got {tuple(src.shape)}")
            dst.copy_(src.detach())
        self.embed_tokens.requires_grad_(not freeze)
        self.lm_head.requires_grad_(not freeze)

    @classmethod
    def from_pretrained(cls, path, dtype: Optional[torch.dtype] = None,
                        device=None) -> "DSparkDrafter":
        """Load a DeepSpec / HF checkpoint directory (config.json + model.safetensors)."""
        from .checkpoint import load_pretrained
        return load_pretrained(cls, path, dtype=dtype, device=device)

    def save_pretrained(self, path) -> None:
        """Write config.json + model.safetensors in DeepSpec's layout."""
        from .checkpoint import save_pretrained
        save_pretrained(self, path)

    # ------------------------------------------------------------------ shared backbone
    def project_context(self, features: Tensor, decode: bool = False) -> Tensor:
        """ctx = hidden_norm(fc(features)): [..., F] target features -> [..., d]. ``decode``:
        through the few-row GEMM op (no autograd)."""
        if features.shape[-1] != self.config.feature_size:
            raise ValueError(
                f"features must have F = len(target_layer_ids) * hidden_size = "
                f"{self.config.feature_size} channels, got shape {tuple(features.shape)}")
        x = features.to(self.dtype)
        return self.hidden_norm(decode_linear(x, self.fc) if decode else self.fc(x))

    def block_input_ids(self, anchor: Tensor, block: int) -> Tensor:
        """[anchor, mask x (block - 1)] per row: int64 [..., block]."""
        ids = torch.full(anchor.shape + (block,), self.config.mask_token_id,
                         dtype=torch.int64, device=anchor.device)
        ids[..., 0] = anchor
        return ids

    def run_layers(self, x: Tensor, positions: Tensor, joins, mask: Tensor) -> Tensor:
        """The block through every layer; ``joins[i]`` assembles layer i's keys/values.
        Returns norm(h) [B, Q, d]."""
        cos, sin = self.rotary_emb(positions, x.dtype)
        for layer, join in zip(self.layers, joins):
            x = layer(x, cos, sin, join, mask)
        return self.norm(x)

    # ------------------------------------------------------------------ Drafter protocol
    def reset(self, batch_size: int, device) -> None:
        """Forget every request; ``batch_size`` empty rows on ``device``."""
        device = torch.device(device)
        if device != self.device and not (device.type == self.device.type
                                          and device.index is None):
            raise ValueError(f"reset(device={device}) but the drafter's weights are on "
                             f"{self.device}; move the drafter first (.to(device))")
        self.cache.reset(int(batch_size), self.device, self.dtype)
        self._pending = []

    def _require_cache(self) -> None:
        if self.cache.lengths is None:
            raise RuntimeError("call reset(batch_size, device) before update()/draft()")

    @torch.no_grad()
    def update(self, ctx: ContextUpdate) -> None:
        """Take the newly committed tokens (rows ragged, 0 new tokens allowed). Their context
        K/V are computed by the next :meth:`draft`, in the same pass as the block (one pass
        over the layers per round); :meth:`flush_context` computes them now."""
        self._require_cache()
        batch = self.cache.batch_size
        if ctx.features is None:
            raise ValueError(f"ContextUpdate.features is required: DSparkDrafter reads target "
                             f"layers {self.target_layer_ids}")
        feats, lengths, positions = ctx.features, ctx.lengths, ctx.positions
        if feats.dim() != 3 or feats.shape[0] != batch:
            raise ValueError(f"ContextUpdate.features must be [B, n, F] with B = {batch}, got "
                             f"shape {tuple(feats.shape)}")
        n = feats.shape[1]
        _check_vector("ContextUpdate.lengths", lengths, batch, torch.int64,
                      self.cache.lengths.device)
        if tuple(positions.shape) != (batch, n):
            raise ValueError(f"ContextUpdate.positions must be [B, n] = [{batch}, {n}], got "
                             f"shape {tuple(positions.shape)}")
        if feats.shape[-1] != self.config.feature_size:
            raise ValueError(
                f"features must have F = len(target_layer_ids) * hidden_size = "
                f"{self.config.feature_size} channels, got shape {tuple(feats.shape)}")
        if n == 0:
            return
        counts = lengths.clamp(0, n)
        # Padding entries may hold anything; zeros keep every cached slot finite.
        live = torch.arange(n, device=counts.device)[None, :] < counts[:, None]
        feats = feats.to(self.device).masked_fill(~live[:, :, None], 0)
        positions = positions.to(self.device)
        # Updates with no draft between them (skipped rounds) queue up; the next draft
        # merges them once (_take_pending).
        self._pending.append((feats, counts, positions))

    def _take_pending(self):
        """(features, counts, positions) of every queued update as one right-padded batch,
        or None; the queue is emptied."""
        parts, self._pending = self._pending, []
        if len(parts) <= 1:
            return parts[0] if parts else None
        feats, positions, counts = concat_ragged([c for _, c, _ in parts],
                                                 [f for f, _, _ in parts],
                                                 [p for _, _, p in parts])
        return feats, counts, positions

    @torch.no_grad()
    def flush_context(self) -> None:
        """Append the pending context tokens' K/V to the cache now (a separate pass; decoding
        folds this into :meth:`draft`). Call it before inspecting ``cache``."""
        self._require_cache()
        pending = self._take_pending()
        if pending is None:
            return
        feats, counts, positions = pending
        c = self.project_context(feats)
        cos, sin = self.rotary_emb(positions, c.dtype)
        kvs = [layer.context_key_values(c, cos, sin) for layer in self.layers]
        self.cache.append(torch.stack([k for k, _ in kvs]), torch.stack([v for _, v in kvs]),
                          counts)

    @torch.no_grad()
    def draft(self, anchor: Tensor, anchor_position: Tensor, gamma: int,
              temperature: Tensor, seed: Tensor, offset: Tensor) -> DraftBlock:
        """Propose ``gamma`` (1..block_size) tokens after ``anchor`` for every row. The context
        tokens of the last :meth:`update` and the block go through the layers together: one
        fused Q/K/V GEMM per layer over [new context ; block], one scatter of their K/V into
        the cache, attention and MLP for the block only."""
        self._require_cache()
        block = self.config.block_size
        if isinstance(gamma, bool) or not isinstance(gamma, int) \
                or not 1 <= gamma <= block:
            raise ValueError(f"gamma (num_tokens) must be an int in [1, block_size = {block}], got "
                             f"{gamma!r}")
        batch, device = self.cache.batch_size, self.cache.lengths.device
        _check_vector("anchor", anchor, batch, torch.int64, device)
        _check_vector("anchor_position", anchor_position, batch, torch.int64, device)
        _check_vector("temperature", temperature, batch, torch.float32, device)
        _check_vector("seed", seed, batch, torch.int64, device)
        _check_vector("offset", offset, batch, torch.int64, device)

        x = self.embed_tokens(self.block_input_ids(anchor, block))
        block_pos = anchor_position[:, None] + self._block_steps(block, device)
        pending = self._take_pending()
        if pending is not None:
            feats, counts, ctx_pos = pending
            ctx = self.project_context(feats, decode=True)
            positions = torch.cat([ctx_pos, block_pos], dim=1)
        else:
            ctx, counts, positions = None, torch.zeros_like(anchor), block_pos
        cache = self.cache
        plan = cache.plan(counts, 0 if ctx is None else ctx.shape[1], block)
        cos, sin = self.rotary_emb(positions, x.dtype)
        for layer in self.layers:
            layer.refresh_fused()
        for i, layer in enumerate(self.layers):
            x = layer.decode(x, ctx, cos, sin,
                             lambda k, v, i=i: cache.write(i, plan, k, v), plan.mask)
        cache.commit(plan)
        hidden = self.norm(x[:, :gamma])
        base = decode_linear(hidden, self.lm_head)
        return self._sample(base, hidden, anchor, temperature, seed, offset)

    def _block_steps(self, block: int, device) -> Tensor:
        """arange(block) [1, block], made once per device (it never changes)."""
        steps = self._steps
        if steps is None or steps.device != device or steps.shape[1] != block:
            steps = self._steps = torch.arange(block, device=device)[None, :]
        return steps

    def _sample(self, base: Tensor, hidden: Tensor, anchor: Tensor, temperature: Tensor,
                seed: Tensor, offset: Tensor) -> DraftBlock:
        if self.markov_head is not None:
            kwargs = dict(self.markov_head.op_kwargs())
            w1, w2 = kwargs.pop("w1"), kwargs.pop("w2")
            head = self.markov_head.head_type
            if self.confidence_head is not None:
                kwargs.update(self.confidence_head.op_kwargs())
            needs_hidden = head != "vanilla" or self.confidence_head is not None
            with phase("markov"):  # reported apart from the backbone in profiles
                out = markov_sample(base, anchor, w1, w2, temperature, seed, offset,
                                    hidden=hidden if needs_hidden else None,
                                    topk=self.config.draft_topk, **kwargs)
            return DraftBlock(draft_tokens=out.draft_tokens, draft_logits=out.draft_logits,
                              base_logits=base, confidence_logits=out.confidence_logits,
                              hidden=hidden,
                              draft_ids=out.draft_ids if isinstance(out, MarkovTopkResult)
                              else None)
        tokens = sample_draft(base, temperature, seed, offset)
        conf = None if self.confidence_head is None else self.confidence_head(hidden)
        return DraftBlock(draft_tokens=tokens, draft_logits=base, base_logits=base,
                          confidence_logits=conf, hidden=hidden)

    @torch.no_grad()
    def select_rows(self, rows: Tensor) -> None:
        """Keep only the requests at ``rows`` (int64 indices, in that order)."""
        self._require_cache()
        if not isinstance(rows, Tensor) or rows.dim() != 1:
            raise ValueError("rows must be a 1-D int64 tensor of row indices")
        self.cache.select_rows(rows)
        if self._pending:
            idx = rows.to(device=self.device, dtype=torch.int64)
            self._pending = [tuple(t.index_select(0, idx) for t in part)
                             for part in self._pending]

    # ------------------------------------------------------------------ training
    def teacher_forced(self, features: Tensor, input_ids: Tensor, anchors: Tensor,
                       block_keep: Tensor, loss_mask: Optional[Tensor] = None):
        """DeepSpec's training forward: every anchor's block in one pass (see
        :func:`dspark_ext.drafters.dspark.training.teacher_forced`)."""
        from .training import teacher_forced
        return teacher_forced(self, features, input_ids, anchors, block_keep, loss_mask)

    def extra_repr(self) -> str:
        c = self.config
        kind = f"DSpark ({c.markov_head_type}, r={c.markov_rank})" if c.has_markov_head \
            else "DFlash"
        return (f"{kind}, block_size={c.block_size}, target_layer_ids={c.target_layer_ids}, "
                f"confidence_head={c.enable_confidence_head}")
