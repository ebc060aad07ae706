"""Run under torchrun by test_train_distributed.py: the training entry point twice in one
launch (DDP, then FSDP2) into <out>/ddp and <out>/fsdp; the process group is started here
so that both runs share it (each process imports torch and transformers once)."""
import sys

import torch.distributed as dist

from dspark_ext.train.__main__ import main

if __name__ == "__main__":
    dist.init_process_group("gloo")
    out, args = sys.argv[1], sys.argv[2:]
    for strategy in ("ddp", "fsdp"):
        assert main(args + ["--out", f"{out}/{strategy}", "--strategy", strategy]) == 0
    dist.destroy_process_group()
