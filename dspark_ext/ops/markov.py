"""Fused semi-autoregressive drafting with DSpark's Markov heads (design §4): one op for the
sequential stage that follows the parallel backbone.

See :func:`markov_sample`. The pure-PyTorch ground truth is
:func:`dspark_ext.reference.markov.markov_sample`.
"""
from __future__ import annotations

from typing import NamedTuple, Optional, Union

import torch

from ._args import per_row, per_row_seed

_HEADS = ("vanilla", "gated", "rnn")


class MarkovResult(NamedTuple):
    """Outputs of :func:`markov_sample`.

    draft_tokens:      int64 [B, K], x_0 .. x_{K-1} (the teacher tokens in teacher-forced mode;
                       -1 at a position whose corrected logits are all masked).
    draft_logits:      [B, K, V] in the dtype of base_logits: the corrected logits z_k (before
                       temperature), the ``draft_logits`` that ``rejection_sample`` consumes.
    draft_lse:         float32 [B, K], log-sum-exp of z_k / T (of z_k for T = 0 rows).
    confidence_logits: float32 [B, K], w . [h_k; e_k] + b (sigmoid gives c_k), or None.
    """

    draft_tokens: torch.Tensor
    draft_logits: torch.Tensor
    draft_lse: torch.Tensor
    confidence_logits: Optional[torch.Tensor]


class MarkovTopkResult(NamedTuple):
    """Outputs of :func:`markov_sample` with ``topk=k`` (the top-k Markov correction).

    draft_tokens:      int64 [B, K], as :class:`MarkovResult` (always a candidate id).
    draft_logits:      [B, K, k] in the dtype of base_logits: z_k of the candidates; every
                       other vocabulary id has logit -inf.
    draft_ids:         int64 [B, K, k]: the candidates' vocabulary ids (base logit
                       descending, ties to the lower id). ``rejection_sample(...,
                       draft_logits=out.draft_logits, draft_ids=out.draft_ids)`` verifies
                       against exactly this truncated law.
    draft_lse:         float32 [B, K], log-sum-exp of the candidates' z_k / T.
    confidence_logits: as :class:`MarkovResult`.
    """

    draft_tokens: torch.Tensor
    draft_logits: torch.Tensor
    draft_ids: torch.Tensor
    draft_lse: torch.Tensor
    confidence_logits: Optional[torch.Tensor]


def markov_sample(
    base_logits: torch.Tensor,
    anchor_tokens: torch.Tensor,
    w1: torch.Tensor,
    w2: torch.Tensor,
    temperature: Union[torch.Tensor, float],
    seed: Union[torch.Tensor, int],
    offset: Union[torch.Tensor, int],
    *,
    head: str = "vanilla",
    hidden: Optional[torch.Tensor] = None,
    gate_weight: Optional[torch.Tensor] = None,
    gate_bias: Optional[torch.Tensor] = None,
    joint_weight: Optional[torch.Tensor] = None,
    joint_bias: Optional[torch.Tensor] = None,
    conf_weight: Optional[torch.Tensor] = None,
    conf_bias: Optional[torch.Tensor] = None,
    teacher_tokens: Optional[torch.Tensor] = None,
    topk: Optional[int] = None,
) -> Union[MarkovResult, MarkovTopkResult]:
    """Sample K draft tokens left to right with a DSpark Markov head, in one op (design §4).

    For k = 0..K-1, with x_{-1} = ``anchor_tokens`` and e_k = W1[x_{k-1}]:

    * ``head="vanilla"``: bias_k = W2 e_k;
    * ``head="gated"``: g = sigmoid(Wg [h_k; e_k] + bg), bias_k = W2 (g * e_k)
      (``gate_weight`` [r, d+r], ``gate_bias`` [r]);
    * ``head="rnn"``: [gate; cand; out] = Wj [s_{k-1}; e_k; h_k] + bj,
      s_k = sigmoid(gate) s_{k-1} + (1 - sigmoid(gate)) tanh(cand), bias_k = W2 tanh(out),
      s_{-1} = 0 (``joint_weight`` [3r, 2r+d], ``joint_bias`` [3r]);

    z_k = base_logits[:, k] + bias_k (float32, then rounded to the dtype of ``base_logits``),
    and x_k is drawn from softmax(z_k / T) by Gumbel-max with the Philox stream reserved for
    drafting (seed, offset, position k), using the *rounded* z_k, exactly the logits returned
    (argmax of z_k, lowest index on ties, for rows with T = 0).

    Shapes: ``base_logits`` [B, K, V] float32/bfloat16/float16 (vocabulary dim contiguous),
    ``anchor_tokens`` int64 [B], ``w1`` / ``w2`` [V, r] float32/bfloat16 (r <= 512; laid out
    as DeepSpec's ``markov_head.markov_w1.weight`` / ``markov_w2.weight``), ``hidden`` [B, K, d]
    (the backbone's hidden states, needed by the gated/rnn heads and the confidence head).
    ``temperature`` float32 [B] or a float (0 = greedy); ``seed`` int64 [B] or an int (row b
    then uses ``seed + b``); ``offset`` int64 [B] or an int (advance it every decoding step).
    ``conf_weight`` [d+r] (input [h; e]) or [d] (input [h]), or DeepSpec's
    ``confidence_head.proj.weight`` [1, n]; ``conf_bias`` [1].
    ``teacher_tokens`` int64 [B, K]: teacher-forced block mode (the training path): x_k is
    given instead of sampled; the outputs equal those of the sampling mode that drew them.

    ``topk=k`` (vLLM's ``dspark_draft_topk``): the bias is computed only for the k largest
    base logits of each position and every other logit is -inf, so a step reads k rows of W2
    instead of V; the drafts are drawn from that truncated law (the same Philox lanes as the
    dense path: ``topk=V`` gives the dense tokens) and :class:`MarkovTopkResult` returns the
    candidates' logits and ids, which verification reads through ``draft_ids``. On CUDA the
    candidates come from ``torch.topk``, which may break an exact tie at the k-th place
    differently from the CPU (the law verified is always the one the drafts were drawn from).

    Returns :class:`MarkovResult` (:class:`MarkovTopkResult` with ``topk``). Tokens are identical on CPU and CUDA for the same seeds
    except where two perturbed keys agree to float32 rounding of the bias accumulation (the
    executors sum the r products in different orders). On CUDA, value errors that the CPU op
    raises for (anchor outside [0, V), negative or non-finite temperature) give token -1 at
    every position of the row instead (no host synchronisation).

    >>> out = markov_sample(base, anchor, w1, w2, 0.8, seed=1234, offset=step)
    >>> res = rejection_sample(target, out.draft_tokens, out.draft_logits, 0.8, 1234, step)
    """
    if head not in _HEADS:
        raise ValueError(f"head must be one of {_HEADS}, got {head!r}")
    if head != "gated" and (gate_weight is not None or gate_bias is not None):
        raise ValueError(f"gate_weight/gate_bias belong to head='gated', not {head!r}")
    if head != "rnn" and (joint_weight is not None or joint_bias is not None):
        raise ValueError(f"joint_weight/joint_bias belong to head='rnn', not {head!r}")
    head_weight, head_bias = {"vanilla": (None, None), "gated": (gate_weight, gate_bias),
                              "rnn": (joint_weight, joint_bias)}[head]
    device = base_logits.device
    batch = base_logits.shape[0] if base_logits.dim() >= 1 else 0
    temperature = per_row(temperature, batch, torch.float32, device, "temperature")
    seed = per_row_seed(seed, batch, device)
    offset = per_row(offset, batch, torch.int64, device, "offset")
    if topk is not None:
        if isinstance(topk, bool) or not isinstance(topk, int):
            raise TypeError(f"topk must be an int or None, got {type(topk).__name__}")
        tokens, logits, ids, lse, conf = torch.ops.dspark.markov_sample_topk(
            base_logits, anchor_tokens, w1, w2, temperature, seed, offset, head, hidden,
            head_weight, head_bias, conf_weight, conf_bias, teacher_tokens, topk)
        return MarkovTopkResult(tokens, logits, ids, lse,
                                conf if conf_weight is not None else None)
    tokens, logits, lse, conf = torch.ops.dspark.markov_sample(
        base_logits, anchor_tokens, w1, w2, temperature, seed, offset, head, hidden,
        head_weight, head_bias, conf_weight, conf_bias, teacher_tokens)
    return MarkovResult(tokens, logits, lse, conf if conf_weight is not None else None)
