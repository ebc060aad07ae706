"""The bundled models' tokenizer: byte-level BPE trained on the corpus's training files.

Byte-level, so any text round-trips (held-out code included). Special tokens come first:
``<|endoftext|>`` (EOS and padding; it also separates files in the training stream) and
``<|mask|>``, the DSpark drafter's mask token, which the text never produces. Saved as a
``tokenizer.json`` that ``PreTrainedTokenizerFast`` (and ``AutoTokenizer``) load.
"""
from __future__ import annotations

import os
from typing import Iterable

__all__ = ["EOS", "MASK", "train_tokenizer", "load_tokenizer"]

EOS = "<|endoftext|>"
MASK = "<|mask|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int, out_dir: str):
    """Train, save to ``out_dir`` (tokenizer.json + tokenizer_config.json), return the HF
    tokenizer. Deterministic for the same texts in the same order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast
    if vocab_size < 512:
        raise ValueError(f"vocab_size must be at least 512 (256 bytes + merges), got "
                         f"{vocab_size}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS, MASK],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=EOS,
                                 model_max_length=1 << 20, clean_up_tokenization_spaces=False)
    os.makedirs(out_dir, exist_ok=True)
    hf.save_pretrained(out_dir)
    return hf


def load_tokenizer(path: str):
    from transformers import PreTrainedTokenizerFast
    if not os.path.isfile(os.path.join(path, "tokenizer.json")):
        raise FileNotFoundError(f"no tokenizer.json in {path!r}")
    return PreTrainedTokenizerFast.from_pretrained(path)
