"""Hugging Face integration through transformers' public ``custom_generate`` hook (no
monkey-patching), batch > 1 included::

    out = model.generate(input_ids, attention_mask=mask, max_new_tokens=64,
                         custom_generate=dspark_ext.hf.generate,
                         drafter=dspark_ext.NgramDrafter(), gamma=4)

transformers prepares the inputs and the generation config, then calls :func:`generate`
with them. From the config we honour ``max_length``/``max_new_tokens``, ``do_sample`` with
``temperature``, ``top_k`` and ``top_p``, ``eos_token_id``, ``pad_token_id`` and
``return_dict_in_generate``. A logits processor or stopping criterion we cannot reproduce
exactly (repetition penalty, min length, bad words, ...) raises instead of silently
sampling a different law. transformers does not forward ``assistant_model`` or
``streamer`` to a custom generate function, so ours are named ``drafter`` and
``on_tokens`` (called once per round with {row: new tokens}).
"""
from __future__ import annotations

from typing import Callable, Dict, List, Optional, Tuple

import torch

from ..decoding.decoder import SpeculativeDecoder
from ..decoding.policies import FixedLength
from ..decoding.verification import resolve_method

# Processors the decoder reproduces exactly (by what generation_config says), and stopping
# criteria it implements itself (max length, EOS).
_WARPERS = {"TemperatureLogitsWarper", "TopKLogitsWarper", "TopPLogitsWarper"}
_STOPPERS = {"MaxLengthCriteria", "EosTokenCriteria", "MaxTimeCriteria"}
# The last (model, drafter) pair and its decoder (the pair is held, so ids cannot be reused).
_DECODERS: Dict[Tuple[int, int], Tuple[object, object, SpeculativeDecoder]] = {}


def _check_supported(logits_processor, stopping_criteria, cfg) -> None:
    others = [type(p).__name__ for p in (logits_processor or [])
              if type(p).__name__ not in _WARPERS]
    if others:
        raise NotImplementedError(
            f"dspark_ext.hf.generate cannot honour the logits processors {others} exactly "
            "(speculative verification would sample a different law); remove those options")
    stops = [type(c).__name__ for c in (stopping_criteria or [])
             if type(c).__name__ not in _STOPPERS]
    if stops:
        raise NotImplementedError(f"dspark_ext.hf.generate does not support the stopping "
                                  f"criteria {stops}")
    if getattr(cfg, "num_beams", 1) not in (None, 1):
        raise NotImplementedError("dspark_ext.hf.generate does not do beam search (num_beams>1)")
    for flag in ("output_scores", "output_logits", "output_attentions",
                 "output_hidden_states"):
        if getattr(cfg, flag, False):
            raise NotImplementedError(f"dspark_ext.hf.generate does not return {flag}")


def _decoder(model, drafter, gamma, method, length_policy) -> SpeculativeDecoder:
    # One adapter per (model, drafter) pair, so repeated calls reuse its hooks and buffers.
    key = (id(model), id(drafter))
    held = _DECODERS.get(key)
    if held is None or held[0] is not model or held[1] is not drafter:
        dec = SpeculativeDecoder(model, drafter, gamma=gamma, method=method,
                                 length_policy=length_policy)
        _DECODERS.clear()
        _DECODERS[key] = (model, drafter, dec)
        return dec
    return held[2]


def generate(model, input_ids, logits_processor=None, stopping_criteria=None,
             generation_config=None, synced_gpus: bool = False, *, drafter=None,
             gamma: Optional[int] = None, method: Optional[str] = None,
             verify: Optional[str] = None, length_policy=None,
             seed: Optional[int] = None,
             on_tokens: Optional[Callable[[Dict[int, List[int]]], None]] = None,
             **model_kwargs):
    """The ``custom_generate`` callable. ``drafter``: any dspark_ext drafter (required).
    ``gamma``: draft tokens per round. ``method`` (older name ``verify``): "token" (default),
    "block" or "greedy".
    ``length_policy``: a dspark_ext policy (FixedLength by default). ``seed``: Philox seed
    (row b uses seed + b; None draws a fresh one)."""
    if drafter is None:
        raise ValueError("dspark_ext.hf.generate needs drafter=... (e.g. "
                         "dspark_ext.NgramDrafter() or a DSparkDrafter)")
    cfg = generation_config
    _check_supported(logits_processor, stopping_criteria, cfg)
    if model_kwargs.get("inputs_embeds") is not None:
        raise NotImplementedError("dspark_ext.hf.generate needs input_ids, not inputs_embeds")
    mask = model_kwargs.get("attention_mask")
    max_new = int(cfg.max_length) - input_ids.shape[1]
    temperature = float(cfg.temperature if cfg.temperature is not None else 1.0) \
        if cfg.do_sample else 0.0
    eos = cfg._eos_token_tensor if getattr(cfg, "_eos_token_tensor", None) is not None \
        else cfg.eos_token_id
    pad = cfg._pad_token_tensor if getattr(cfg, "_pad_token_tensor", None) is not None \
        else cfg.pad_token_id
    pad = None if pad is None else int(torch.as_tensor(pad).flatten()[0])
    top_k = cfg.top_k if cfg.do_sample and cfg.top_k not in (None, 0) else None
    top_p = cfg.top_p if cfg.do_sample and cfg.top_p not in (None, 1.0) else None
    method = resolve_method(method, verify, "token")
    dec = _decoder(model, drafter, gamma, method, length_policy or FixedLength())
    out = dec.generate(input_ids, mask, max_new_tokens=max(max_new, 0),
                       temperature=temperature, seed=seed, eos_token_id=eos,
                       pad_token_id=pad, method=method, gamma=gamma, top_k=top_k, top_p=top_p,
                       stream=on_tokens)
    sequences = out.sequences.to(input_ids.device)
    if cfg.return_dict_in_generate:
        from transformers.generation.utils import GenerateDecoderOnlyOutput
        result = GenerateDecoderOnlyOutput(sequences=sequences)
        result.dspark_stats = out.stats  # per-round statistics for design §5 metrics
        return result
    return sequences
