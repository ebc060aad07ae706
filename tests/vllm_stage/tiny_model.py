"""A tiny Qwen3 and a locally trained tokenizer, saved as a Hugging Face checkpoint that
vllm.LLM loads (no downloads). head_dim 32: vLLM's CPU attention needs at least that."""
import json
import os

import numpy as np
import torch

WORDS = [f"w{i}" for i in range(62)]
SPECIALS = ["[UNK]", "<eos>"]
VOCAB = len(WORDS) + len(SPECIALS)
EOS_ID = 1


def save_tokenizer(path):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    trainer = trainers.WordLevelTrainer(vocab_size=VOCAB, special_tokens=SPECIALS)
    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, size=12)) for _ in range(400)] + [" ".join(WORDS)]
    tok.train_from_iterator(corpus, trainer)
    assert tok.get_vocab_size() == VOCAB and tok.token_to_id("<eos>") == EOS_ID
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]",
                            eos_token="<eos>").save_pretrained(path)


def _config(vocab):
    from transformers import Qwen3Config

    return Qwen3Config(vocab_size=vocab, hidden_size=64, intermediate_size=128,
                       num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                       head_dim=32, max_position_embeddings=512, rms_norm_eps=1e-6,
                       tie_word_embeddings=False, eos_token_id=EOS_ID, bos_token_id=None,
                       pad_token_id=0, torch_dtype="float32")


def build(path, kind, seed=0, vocab=VOCAB):
    """kind "random": random weights with a sharply peaked output (greedy decoding far from
    ties). kind "iid": attention and MLP outputs zero and every embedding equal, so the
    next-token law is the same constant softmax at every position, whatever the context;
    returns its logits (float64) for the exact law. ``vocab`` > VOCAB pads the model's
    vocabulary beyond the tokenizer's (benchmarks: generate with detokenize=False)."""
    from transformers import Qwen3ForCausalLM

    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(_config(vocab)).float()
    logits = None
    with torch.no_grad():
        if kind == "random":
            model.model.embed_tokens.weight.normal_(0.0, 1.0)
            model.lm_head.weight.normal_(0.0, 1.0)
        elif kind == "iid":
            for layer in model.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            hidden = model.config.hidden_size
            e = torch.linspace(-1.0, 1.0, hidden)
            model.model.embed_tokens.weight.copy_(e.expand(vocab, hidden))
            # Designed law: a few likely tokens, a tail of unlikely ones.
            want = torch.full((vocab,), -2.5 - np.log(vocab / VOCAB))
            want[2:8] = torch.tensor([1.6, 1.2, 0.9, 0.5, 0.2, 0.0])
            normed = e / torch.sqrt((e * e).mean() + model.config.rms_norm_eps)
            model.lm_head.weight.copy_(want[:, None] * normed[None, :] / (normed @ normed))
            w = model.lm_head.weight.double()
            n = model.model.norm.weight.double()
            e64 = e.double()
            h = e64 / torch.sqrt((e64 * e64).mean() + model.config.rms_norm_eps) * n
            logits = (w @ h).numpy()
        else:
            raise ValueError(kind)
    model.save_pretrained(path, safe_serialization=True)
    save_tokenizer(path)
    if logits is not None:
        with open(os.path.join(path, "iid_logits.json"), "w") as f:
            json.dump(logits.tolist(), f)
    return logits
