"""Run under torchrun by test_train_distributed.py: the training entry point several times in
one launch (each process imports torch and transformers once), into <out>/ddp and <out>/fsdp:

1. DDP;
2. FSDP2, checkpointing every 2 steps; then its final checkpoint is moved to
   <out>/fsdp_uninterrupted, ``latest`` set back to step 2 (an interrupted run), and
3. the same FSDP2 command again, which resumes from step 2.

The process group is started here so that every run shares it."""
import os
import shutil
import sys

import torch.distributed as dist

from dspark_ext.train.__main__ import main

if __name__ == "__main__":
    dist.init_process_group("gloo")
    out, args = sys.argv[1], sys.argv[2:]
    assert main(args + ["--out", f"{out}/ddp", "--strategy", "ddp"]) == 0
    fsdp = args + ["--out", f"{out}/fsdp", "--strategy", "fsdp", "--save-every", "2"]
    assert main(fsdp) == 0
    if dist.get_rank() == 0:
        shutil.move(f"{out}/fsdp/step_0000004", f"{out}/fsdp_uninterrupted")
        with open(os.path.join(out, "fsdp", "latest"), "w") as f:
            f.write("step_0000002\n")
    dist.barrier()
    assert main(fsdp) == 0
    dist.destroy_process_group()
