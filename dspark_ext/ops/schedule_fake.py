"""Fake (meta) kernel of the scheduler op, so it traces under torch.compile(fullgraph=True),
export and CUDA-graph capture without running (see verify_fake.py for the verification ops)."""
import torch


@torch.library.register_fake("dspark::schedule_prefix")
def _schedule_prefix_fake(confidence, sps, max_len=None, capacity=None, max_batch_tokens=None,
                          early_stop=True):
    rows = confidence.shape[0]
    dev = confidence.device
    return (
        confidence.new_empty((rows,), dtype=torch.int64, device=dev),
        confidence.new_empty((), dtype=torch.int64, device=dev),
        confidence.new_empty((), dtype=torch.float64, device=dev),
        confidence.new_empty((), dtype=torch.float64, device=dev),
    )
