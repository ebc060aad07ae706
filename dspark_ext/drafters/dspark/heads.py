"""DSpark's Markov head (vanilla / gated / rnn) and confidence head (design §4), as modules with
DeepSpec's parameter names (``markov_head.markov_w1.weight`` ...).

Two ways to run them:

* decoding: the weights go to the fused ``dspark_ext.markov_sample`` op
  (:meth:`MarkovHead.op_kwargs`), which samples the block left to right;
* training: :meth:`MarkovHead.teacher_forced_logits` / :meth:`ConfidenceHead.forward` are plain,
  differentiable torch with the true previous tokens (the op's teacher-forced mode computes the
  same values, without gradients).

The op takes weights in float32 or bfloat16 only; a float16 model hands it float32 copies made
once and reused until a weight changes (tracked by each parameter's storage and version
counter, which in-place updates such as optimiser steps and ``load_state_dict`` bump).
"""
from __future__ import annotations

from typing import Dict, Optional, Sequence

import torch
from torch import Tensor, nn

from .config import DSparkConfig

__all__ = ["MarkovHead", "ConfidenceHead", "OpWeightCache"]

_OP_DTYPES = (torch.float32, torch.bfloat16)


class OpWeightCache:
    """Weights in a dtype the fused op accepts, converted only when a weight changed."""

    def __init__(self):
        self._key = None
        self._tensors: Sequence[Optional[Tensor]] = ()

    def get(self, tensors: Sequence[Optional[Tensor]]) -> Sequence[Optional[Tensor]]:
        if all(t is None or t.dtype in _OP_DTYPES for t in tensors):
            return [None if t is None else t.detach() for t in tensors]
        key = tuple(None if t is None else (t.data_ptr(), t._version, t.device, t.shape)
                    for t in tensors)
        if key != self._key:
            self._tensors = [None if t is None else t.detach().to(torch.float32)
                             for t in tensors]
            self._key = key
        return self._tensors


class MarkovHead(nn.Module):
    """e_k = W1[x_{k-1}]; bias_k = W2 u_k with u_k = e_k (vanilla), sigmoid(Wg [h; e] + bg) * e_k
    (gated) or tanh(out) of a GRU-like state over [s; e; h] (rnn)."""

    def __init__(self, config: DSparkConfig):
        super().__init__()
        v, r, d = config.vocab_size, config.markov_rank, config.hidden_size
        self.head_type = config.markov_head_type
        self.rank = r
        self.markov_w1 = nn.Embedding(v, r)
        self.markov_w2 = nn.Linear(r, v, bias=False)
        if self.head_type == "gated":
            self.gate_proj = nn.Linear(d + r, r)
        elif self.head_type == "rnn":
            self.joint_proj = nn.Linear(2 * r + d, 3 * r)
        self._op_cache = OpWeightCache()

    def _extra(self):
        if self.head_type == "gated":
            return self.gate_proj
        if self.head_type == "rnn":
            return self.joint_proj
        return None

    def op_kwargs(self) -> Dict[str, object]:
        """w1, w2 and the head's weights as ``markov_sample`` keyword arguments."""
        extra = self._extra()
        tensors = [self.markov_w1.weight, self.markov_w2.weight,
                   None if extra is None else extra.weight, None if extra is None else extra.bias]
        w1, w2, hw, hb = self._op_cache.get(tensors)
        out: Dict[str, object] = {"w1": w1, "w2": w2, "head": self.head_type}
        if self.head_type == "gated":
            out.update(gate_weight=hw, gate_bias=hb)
        elif self.head_type == "rnn":
            out.update(joint_weight=hw, joint_bias=hb)
        return out

    def prev_embeddings(self, prev_tokens: Tensor) -> Tensor:
        return self.markov_w1(prev_tokens)

    def teacher_forced_logits(self, base_logits: Tensor, prev_tokens: Tensor,
                              hidden: Tensor) -> Tensor:
        """z = base_logits + bias for every position given the true previous tokens.
        base_logits [..., K, V], prev_tokens int64 [..., K] (x_{k-1}; anchor first),
        hidden [..., K, d] -> [..., K, V]; differentiable."""
        e = self.prev_embeddings(prev_tokens).to(hidden.dtype)
        if self.head_type == "vanilla":
            u = e
        elif self.head_type == "gated":
            u = torch.sigmoid(self.gate_proj(torch.cat([hidden, e], dim=-1))) * e
        else:
            u = self._rnn_outputs(e, hidden)
        return base_logits + self.markov_w2(u).to(base_logits.dtype)

    def _rnn_outputs(self, e: Tensor, hidden: Tensor) -> Tensor:
        """tanh(out_k) for k = 0..K-1 of the recurrent state s_k (s_{-1} = 0)."""
        r = self.rank
        state = e.new_zeros(e.shape[:-2] + (r,))
        outs = []
        for k in range(e.shape[-2]):  # the recurrence is sequential by definition
            a = self.joint_proj(torch.cat([state, e[..., k, :], hidden[..., k, :]], dim=-1))
            gate, cand, out = a.split(r, dim=-1)
            g = torch.sigmoid(gate)
            state = g * state + (1 - g) * torch.tanh(cand)
            outs.append(torch.tanh(out))
        return torch.stack(outs, dim=-2)


class ConfidenceHead(nn.Module):
    """c_k logit = w . [h_k; e_k] + b (with_markov) or w . h_k + b: ``confidence_head.proj``."""

    def __init__(self, config: DSparkConfig):
        super().__init__()
        n = config.hidden_size + (config.markov_rank if config.confidence_uses_markov else 0)
        self.with_markov = config.confidence_uses_markov
        self.proj = nn.Linear(n, 1)
        self._op_cache = OpWeightCache()

    def op_kwargs(self) -> Dict[str, object]:
        w, b = self._op_cache.get([self.proj.weight, self.proj.bias])
        return {"conf_weight": w, "conf_bias": b}

    def forward(self, hidden: Tensor, prev_embeddings: Optional[Tensor] = None) -> Tensor:
        """hidden [..., d] (and W1[x_{k-1}] [..., r] when with_markov) -> float32 logits [...],
        computed in float32 (as the fused op does)."""
        feats = hidden if not self.with_markov else torch.cat(
            [hidden, prev_embeddings.to(hidden.dtype)], dim=-1)
        w, b = self.proj.weight, self.proj.bias
        return torch.nn.functional.linear(feats.float(), w.float(), b.float()).squeeze(-1)
