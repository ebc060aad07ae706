"""Data files of the bundled models' pipeline, cut from the corpus's token streams.

* drafter training data: the target's training stream cut into consecutive windows, as the
  pre-tokenised JSONL ``python -m dspark_ext.train`` reads (every token supervised);
* evaluation prompts: from the held-out modules only, each prompt a file's text up to and
  including a ``def`` line (the model continues the function body), the last
  ``max_prompt_tokens`` tokens kept. Deterministic: the same corpus gives the same prompts;
* regeneration prompts: the same cut, from the *training* modules, continued by the target
  itself (``build regen``) so the drafters also learn the target's own continuations -- the
  text they are asked to predict when decoding.
"""
from __future__ import annotations

import json
import os
import re
from typing import List

import torch

__all__ = ["write_drafter_data", "def_prompts", "heldout_prompts", "write_prompts"]

_DEF = re.compile(r"^\s*(async\s+)?def\s+\w+")


def write_drafter_data(stream: torch.Tensor, path: str, seq_len: int = 512) -> int:
    """Consecutive ``seq_len`` windows of ``stream``; returns how many were written."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    ids = stream.tolist()
    n = 0
    with open(path + ".tmp", "w") as f:
        for start in range(0, len(ids) - seq_len + 1, seq_len):
            win = ids[start:start + seq_len]
            f.write(json.dumps({"input_ids": win, "loss_mask": [1] * len(win)}) + "\n")
            n += 1
    os.replace(path + ".tmp", path)
    return n


def heldout_prompts(corpus, tokenizer, per_file: int = 4,
                    max_prompt_tokens: int = 256) -> List[dict]:
    """The evaluation prompts: :func:`def_prompts` of the held-out modules."""
    return def_prompts(corpus, corpus.heldout, tokenizer, per_file, max_prompt_tokens)


def def_prompts(corpus, files: List[str], tokenizer, per_file: int = 4,
                max_prompt_tokens: int = 256) -> List[dict]:
    """Up to ``per_file`` prompts per file of ``files``, cut after ``def`` lines spread evenly
    over the file (skipping ones too close to the start to give context)."""
    prompts = []
    for rel in files:
        text = corpus.read(rel)
        lines = text.splitlines(keepends=True)
        cuts, pos = [], 0
        for line in lines:
            pos += len(line)
            if _DEF.match(line) and pos > 400 and pos < len(text) - 200:
                cuts.append(pos)
        if not cuts:
            continue
        step = max(1, len(cuts) // per_file)
        for cut in cuts[::step][:per_file]:
            ids = tokenizer.encode(text[:cut], add_special_tokens=False)[-max_prompt_tokens:]
            prompts.append({"module": rel, "char": cut, "input_ids": ids,
                            "text": tokenizer.decode(ids)})
    return prompts


def write_prompts(prompts: List[dict], path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        for p in prompts:
            f.write(json.dumps(p) + "\n")
    os.replace(path + ".tmp", path)
