"""Evaluation prompts as token lists.

* JSONL, one object per line: ``{"turns": [...]}`` (DeepSpec's eval_datasets; the first turn),
  ``{"prompt": ...}``, ``{"messages": [...]}`` or pre-tokenised ``{"input_ids": [...]}``;
  chat-formatted with the tokenizer's template when it has one (generation prompt appended);
* any other file (text, source code): the whole file is one prompt.

Prompts longer than ``max_prompt_tokens`` keep their last tokens.
"""
from __future__ import annotations

from typing import List, Optional, Sequence

from ..train.data import chat_to_example, read_jsonl

__all__ = ["load_prompts"]


def _from_object(obj: dict, tokenizer) -> List[int]:
    if "input_ids" in obj:
        return [int(t) for t in obj["input_ids"]]
    if tokenizer is None:
        raise ValueError("text prompts need a tokenizer (or pre-tokenised input_ids)")
    if "turns" in obj:
        messages = [{"role": "user", "content": obj["turns"][0]}]
    elif "messages" in obj:
        messages = [m for m in obj["messages"] if m.get("role") != "assistant"][:1]
    elif "prompt" in obj:
        messages = [{"role": "user", "content": obj["prompt"]}]
    else:
        raise ValueError(f"a prompt line needs turns, prompt, messages or input_ids; got "
                         f"{sorted(obj)}")
    return chat_to_example(tokenizer, messages, max_length=1 << 30).input_ids


def load_prompts(paths: Sequence[str], tokenizer=None, max_prompts: Optional[int] = None,
                 max_prompt_tokens: Optional[int] = None) -> List[List[int]]:
    prompts: List[List[int]] = []
    for path in paths:
        if path.endswith((".jsonl", ".json")):
            prompts.extend(_from_object(obj, tokenizer) for obj in read_jsonl(path))
        else:
            if tokenizer is None:
                raise ValueError(f"{path}: text prompts need a tokenizer")
            with open(path, "r", encoding="utf-8", errors="replace") as f:
                prompts.append(list(tokenizer.encode(f.read(), add_special_tokens=False)))
    if max_prompt_tokens:
        prompts = [p[-max_prompt_tokens:] for p in prompts]
    prompts = [p for p in prompts if p]
    if max_prompts is not None:
        prompts = prompts[:max_prompts]
    if not prompts:
        raise ValueError(f"no prompts in {list(paths)}")
    return prompts
