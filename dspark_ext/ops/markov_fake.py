"""Fake (meta) kernels of dspark::markov_sample and markov_sample_topk, so the ops trace under
torch.compile(fullgraph=True) and export without running."""
import torch


@torch.library.register_fake("dspark::markov_sample")
def _markov_sample_fake(base_logits, anchor_tokens, w1, w2, temperature, seed, offset, head,
                        hidden, head_weight, head_bias, conf_weight, conf_bias, teacher_tokens):
    batch, steps, vocab = base_logits.shape
    dev = base_logits.device
    return (
        base_logits.new_empty((batch, steps), dtype=torch.int64, device=dev),
        base_logits.new_empty((batch, steps, vocab)),
        base_logits.new_empty((batch, steps), dtype=torch.float32, device=dev),
        base_logits.new_empty((batch, steps if conf_weight is not None else 0),
                              dtype=torch.float32, device=dev),
    )


@torch.library.register_fake("dspark::markov_sample_topk")
def _markov_sample_topk_fake(base_logits, anchor_tokens, w1, w2, temperature, seed, offset,
                             head, hidden, head_weight, head_bias, conf_weight, conf_bias,
                             teacher_tokens, topk):
    batch, steps, _ = base_logits.shape
    dev = base_logits.device
    return (
        base_logits.new_empty((batch, steps), dtype=torch.int64, device=dev),
        base_logits.new_empty((batch, steps, topk)),
        base_logits.new_empty((batch, steps, topk), dtype=torch.int64, device=dev),
        base_logits.new_empty((batch, steps), dtype=torch.float32, device=dev),
        base_logits.new_empty((batch, steps if conf_weight is not None else 0),
                              dtype=torch.float32, device=dev),
    )
