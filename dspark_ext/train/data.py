"""Training data: token sequences with a loss mask, and the order the trainer reads them in.

Sources (:func:`load_examples`):

* plain text or source files (``.txt``, ``.py``, ...): tokenised with the target's tokenizer,
  files joined with EOS, cut into ``max_length`` windows; every token supervised;
* JSONL chat data, one object per line: ``{"prompt": ..., "response": ...}`` or
  ``{"messages": [{"role": ..., "content": ...}, ...]}`` (also ``conversations``); rendered
  with the tokenizer's chat template when it has one (plain concatenation + EOS otherwise);
  loss only on the assistant's tokens;
* pre-tokenised JSONL: ``{"input_ids": [...], "loss_mask": [...]}`` (no tokenizer needed).

:func:`regenerate` replaces each response by the target's own continuation of its prompt, so
the drafter learns the target's distribution rather than the data's (what the paper does).

Order (:class:`DataOrder`): an endless stream of epochs, each a permutation of the examples
drawn from (seed, epoch); global step s reads stream positions [s*G, (s+1)*G). The position
is a pure function of the step, so a resumed run reads exactly what the uninterrupted one
would have, and every example's anchor seed depends only on (seed, epoch, index).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence, Tuple

import torch
from torch import Tensor

__all__ = ["Example", "DataOrder", "load_examples", "text_examples", "chat_examples",
           "token_examples", "regenerate", "collate", "prompt_of", "pretokenised",
           "read_jsonl"]


@dataclass
class Example:
    input_ids: List[int]
    loss_mask: List[int]

    def __post_init__(self):
        if len(self.input_ids) != len(self.loss_mask):
            raise ValueError(f"input_ids ({len(self.input_ids)}) and loss_mask "
                             f"({len(self.loss_mask)}) must have the same length")


def _encode(tokenizer, text: str) -> List[int]:
    return list(tokenizer.encode(text, add_special_tokens=False))


def _eos(tokenizer) -> Optional[int]:
    eos = getattr(tokenizer, "eos_token_id", None)
    return int(eos) if isinstance(eos, int) else None


def text_examples(paths: Sequence[str], tokenizer, max_length: int) -> List[Example]:
    """Files tokenised, joined with EOS, cut into windows of ``max_length`` (the last window
    kept when it holds at least two tokens); everything supervised."""
    ids: List[int] = []
    eos = _eos(tokenizer)
    for path in paths:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            ids.extend(_encode(tokenizer, f.read()))
        if eos is not None:
            ids.append(eos)
    out = []
    for start in range(0, len(ids), max_length):
        window = ids[start:start + max_length]
        if len(window) >= 2:
            out.append(Example(window, [1] * len(window)))
    return out


def _messages(obj: dict) -> List[dict]:
    if "messages" in obj or "conversations" in obj:
        msgs = obj.get("messages", obj.get("conversations"))
        return [{"role": m.get("role", m.get("from")), "content": m.get("content",
                                                                        m.get("value"))}
                for m in msgs]
    if "prompt" in obj:
        msgs = [{"role": "user", "content": obj["prompt"]}]
        if obj.get("response") is not None:
            msgs.append({"role": "assistant", "content": obj["response"]})
        return msgs
    raise ValueError(f"a chat JSONL line needs 'prompt'[/'response'] or 'messages', got keys "
                     f"{sorted(obj)}")


def _render(tokenizer, messages: List[dict], add_generation_prompt: bool) -> List[int]:
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(messages, tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
        return _encode(tokenizer, text)
    ids: List[int] = []
    eos = _eos(tokenizer)
    for m in messages:
        ids.extend(_encode(tokenizer, m["content"]))
        if m["role"] == "assistant" and eos is not None:
            ids.append(eos)
    return ids


def chat_to_example(tokenizer, messages: List[dict], max_length: int) -> Example:
    """Loss on the assistant turns only: each assistant turn's tokens are those the rendering
    of the conversation up to and including it adds to the rendering up to its prompt."""
    ids: List[int] = []
    mask: List[int] = []
    for i, m in enumerate(messages):
        if m["role"] != "assistant":
            continue
        before = _render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = _render(tokenizer, messages[:i + 1], add_generation_prompt=False)
        if upto[:len(before)] != before:
            raise ValueError("the chat template's rendering of a conversation does not extend "
                             "its rendering of the prompt; cannot locate the response tokens")
        mask.extend([0] * (len(before) - len(ids)) + [1] * (len(upto) - len(before)))
        ids = upto
    if not ids:  # prompt only (regeneration fills the response in)
        ids = _render(tokenizer, messages, add_generation_prompt=True)
        mask = [0] * len(ids)
    return Example(ids[:max_length], mask[:max_length])


def chat_examples(path: str, tokenizer, max_length: int) -> List[Example]:
    return [chat_to_example(tokenizer, _messages(obj), max_length) for obj in read_jsonl(path)]


def token_examples(path: str, max_length: int) -> List[Example]:
    out = []
    for obj in read_jsonl(path):
        ids = [int(t) for t in obj["input_ids"]]
        mask = [int(t) for t in obj.get("loss_mask", [1] * len(ids))]
        out.append(Example(ids[:max_length], mask[:max_length]))
    return out


def read_jsonl(path: str) -> Iterable[dict]:
    """The objects of a JSONL file (blank lines skipped; errors name the line)."""
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{n}: not valid JSON ({exc})") from None


def _jsonl_kind(path: str) -> str:
    for obj in read_jsonl(path):
        return "tokens" if "input_ids" in obj else "chat"
    return "chat"


def pretokenised(paths: Sequence[str]) -> bool:
    """Every file is JSONL whose first object carries ``input_ids`` (no tokenizer needed)."""
    return all(p.endswith((".jsonl", ".json")) and _jsonl_kind(p) == "tokens" for p in paths)


def load_examples(paths: Sequence[str], tokenizer=None, max_length: int = 2048,
                  fmt: str = "auto") -> List[Example]:
    """Examples from ``paths`` (``fmt``: auto | text | chat | tokens; auto: ``.jsonl`` files
    are chat or pre-tokenised by their first line, anything else is text)."""
    examples: List[Example] = []
    text_paths = []
    for path in paths:
        kind = fmt
        if fmt == "auto":
            kind = _jsonl_kind(path) if path.endswith((".jsonl", ".json")) else "text"
        if kind == "text":
            text_paths.append(path)
            continue
        if kind == "tokens":
            examples.extend(token_examples(path, max_length))
        elif kind == "chat":
            _need(tokenizer, path)
            examples.extend(chat_examples(path, tokenizer, max_length))
        else:
            raise ValueError(f"fmt must be auto, text, chat or tokens, got {fmt!r}")
    if text_paths:
        _need(tokenizer, text_paths[0])
        examples.extend(text_examples(text_paths, tokenizer, max_length))
    if not examples:
        raise ValueError(f"no training examples in {list(paths)}")
    return examples


def _need(tokenizer, path: str) -> None:
    if tokenizer is None:
        raise ValueError(f"{path} needs a tokenizer (pass the target's, or use pre-tokenised "
                         "JSONL with input_ids)")


def prompt_of(ex: Example, default_prompt: int = 32) -> List[int]:
    """The tokens before the first supervised one; for all-supervised text, the first
    ``min(default_prompt, len // 2)`` tokens."""
    first = next((i for i, m in enumerate(ex.loss_mask) if m), len(ex.loss_mask))
    if first == 0:
        first = max(1, min(default_prompt, len(ex.input_ids) // 2))
    return ex.input_ids[:first]


@torch.no_grad()
def regenerate(examples: Sequence[Example], model, *, max_new_tokens: int = 512,
               temperature: float = 1.0, eos_token_id=None, batch_size: int = 8,
               seed: int = 0, max_length: Optional[int] = None) -> List[Example]:
    """Each example's prompt continued by the target itself (HF ``generate``, left-padded
    batches); the continuation is supervised. ``temperature`` 0 = greedy."""
    device = model.get_input_embeddings().weight.device
    torch.manual_seed(seed)
    out: List[Example] = []
    for start in range(0, len(examples), batch_size):
        prompts = [prompt_of(ex) for ex in examples[start:start + batch_size]]
        width = max(len(p) for p in prompts)
        ids = torch.zeros(len(prompts), width, dtype=torch.int64)
        att = torch.zeros_like(ids)
        for i, p in enumerate(prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            att[i, width - len(p):] = 1
        kwargs = dict(do_sample=temperature > 0, max_new_tokens=max_new_tokens,
                      pad_token_id=0, eos_token_id=eos_token_id)
        if temperature > 0:
            kwargs.update(temperature=float(temperature), top_k=None, top_p=None)
        gen = model.generate(input_ids=ids.to(device), attention_mask=att.to(device), **kwargs)
        for i, p in enumerate(prompts):
            new = gen[i, width:].tolist()
            if eos_token_id is not None:
                stops = {eos_token_id} if isinstance(eos_token_id, int) else set(eos_token_id)
                cut = next((j + 1 for j, t in enumerate(new) if t in stops), len(new))
                new = new[:cut]
            seq, mask = p + new, [0] * len(p) + [1] * len(new)
            if max_length is not None:
                seq, mask = seq[:max_length], mask[:max_length]
            out.append(Example(seq, mask))
    return out


def collate(examples: Sequence[Example], pad_id: int = 0) -> Tuple[Tensor, Tensor]:
    """Right-padded (input_ids int64 [B, S], loss_mask float32 [B, S]); padding unsupervised."""
    width = max(len(e.input_ids) for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.int64)
    mask = torch.zeros(len(examples), width, dtype=torch.float32)
    for i, e in enumerate(examples):
        ids[i, :len(e.input_ids)] = torch.tensor(e.input_ids, dtype=torch.int64)
        mask[i, :len(e.loss_mask)] = torch.tensor(e.loss_mask, dtype=torch.float32)
    return ids, mask


class DataOrder:
    """Which examples global step ``s`` reads: stream positions [s*G, (s+1)*G) of an endless
    sequence of seeded per-epoch permutations. ``slots(step)`` -> [(epoch, index)] * G."""

    def __init__(self, num_examples: int, global_batch: int, seed: int):
        if num_examples < 1 or global_batch < 1:
            raise ValueError("need at least one example and a global batch >= 1")
        self.n, self.g, self.seed = num_examples, global_batch, seed
        self._perms: dict = {}

    def _perm(self, epoch: int) -> List[int]:
        if epoch not in self._perms:
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perms = {epoch: torch.randperm(self.n, generator=gen).tolist()}
        return self._perms[epoch]

    def slots(self, step: int) -> List[Tuple[int, int]]:
        out = []
        for pos in range(step * self.g, (step + 1) * self.g):
            epoch = pos // self.n
            out.append((epoch, self._perm(epoch)[pos % self.n]))
        return out

    def epoch_of(self, step: int) -> float:
        return step * self.g / self.n

    def anchor_seed(self, epoch: int, index: int) -> int:
        return (self.seed * 2_654_435_761 + epoch * 40_503 + index * 97) % (2 ** 62)
