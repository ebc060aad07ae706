"""Fake (meta) kernels: output shapes and dtypes of every dspark op, so the ops trace under
torch.compile(fullgraph=True), export and CUDA-graph capture without running."""
import torch


def _verify_outputs(target_logits, batch, max_draft, flag_shape):
    long = dict(dtype=torch.int64, device=target_logits.device)
    return (
        target_logits.new_empty((batch,), **long),
        target_logits.new_empty((batch, max_draft + 1), **long),
        target_logits.new_empty((batch,), **long),
        target_logits.new_empty(flag_shape, dtype=torch.int8, device=target_logits.device),
    )


@torch.library.register_fake("dspark::verify_greedy")
def _verify_greedy_fake(target_logits, draft_tokens, num_draft):
    batch, rows = target_logits.shape[0], target_logits.shape[1]
    return _verify_outputs(target_logits, batch, rows - 1, (batch, rows - 1))


def _ragged_batch(cu_num_draft, cu_inclusive):
    return cu_num_draft.shape[0] - (0 if cu_inclusive else 1)


@torch.library.register_fake("dspark::verify_greedy_ragged")
def _verify_greedy_ragged_fake(target_logits, draft_tokens, cu_num_draft, max_num_draft,
                               cu_inclusive=False):
    batch = _ragged_batch(cu_num_draft, cu_inclusive)
    return _verify_outputs(target_logits, batch, max_num_draft, (draft_tokens.shape[0],))


@torch.library.register_fake("dspark::rejection_sample")
def _rejection_sample_fake(target_logits, draft_tokens, draft_logits, temperature, seed, offset,
                           num_draft, block, draft_probs=None, draft_lse=None, draft_ids=None):
    batch, rows = target_logits.shape[0], target_logits.shape[1]
    return _verify_outputs(target_logits, batch, rows - 1, (batch, rows - 1))


@torch.library.register_fake("dspark::rejection_sample_ragged")
def _rejection_sample_ragged_fake(target_logits, draft_tokens, draft_logits, cu_num_draft,
                                  max_num_draft, temperature, seed, offset, block,
                                  draft_probs=None, draft_lse=None, draft_ids=None,
                                  cu_inclusive=False):
    batch = _ragged_batch(cu_num_draft, cu_inclusive)
    return _verify_outputs(target_logits, batch, max_num_draft, (draft_tokens.shape[0],))
