"""Run under ``torchrun``: the training recipe, then this rank's parameters to a file.

Usage: torchrun --nproc_per_node=2 tests/ddp_worker.py OUT_DIR <recipe arguments>
"""
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
import train  # noqa: E402  (the recipe module)

if __name__ == "__main__":
    out_dir, argv = sys.argv[1], sys.argv[2:]
    brain = train.main(argv)
    # parameters only: BatchNorm running statistics are per rank under DDP
    state = {k.replace("module.", ""): v.detach() for k, v in brain.modules.named_parameters()}
    torch.save({"state": state, "steps": brain.optimizer_step},
               os.path.join(out_dir, f"rank{os.environ['RANK']}.pt"))
