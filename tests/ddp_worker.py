"""Run under ``torchrun`` by tests/test_ddp.py; each rank first writes ``OUT_DIR/rank<R>.pid``.

Usage::

    torchrun --nproc_per_node=2 tests/ddp_worker.py OUT_DIR train <recipe arguments>
    torchrun --nproc_per_node=2 tests/ddp_worker.py OUT_DIR checkpoints SAVE_DIR

``train``: the training recipe, then this rank's parameters to ``OUT_DIR/rank<R>.pt``.
``checkpoints``: three ``save_and_keep_only`` rounds of an ``AtomicCheckpointer``
with rank 0's commit slowed down, then the checkpoints this rank lists to
``OUT_DIR/rank<R>.txt``.
"""
import os
import sys
import time
from pathlib import Path
from unittest import mock

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "recipes")]

RANK = int(os.environ["RANK"])
COMMIT_DELAY_S = 0.5


def train(out_dir: Path, argv) -> None:
    import train as recipe  # recipes/train.py

    brain = recipe.main(argv)
    # parameters only: BatchNorm running statistics are per rank under DDP
    state = {k.replace("module.", ""): v.detach() for k, v in brain.modules.named_parameters()}
    torch.save({"state": state, "steps": brain.optimizer_step}, out_dir / f"rank{RANK}.pt")


def slow_replace(src, dst, _replace=os.replace):
    """``os.replace`` of a slow shared disk: the commit lands long after the other ranks move on."""
    time.sleep(COMMIT_DELAY_S)
    _replace(src, dst)


def checkpoints(out_dir: Path, save_dir: str) -> None:
    """Improving ``ErrorRate`` each round, so every round after the first deletes one checkpoint."""
    from speechbrain_ext.checkpoints import AtomicCheckpointer

    torch.distributed.init_process_group("gloo")
    checkpointer = AtomicCheckpointer(save_dir, {"model": torch.nn.Linear(2, 2)})
    with mock.patch("os.replace", slow_replace if RANK == 0 else os.replace):
        for error in (0.5, 0.4, 0.3):
            checkpointer.save_and_keep_only(meta={"ErrorRate": error}, min_keys=["ErrorRate"])
    seen = sorted(f"{c.path.name} {c.meta['ErrorRate']}" for c in checkpointer.list_checkpoints())
    (out_dir / f"rank{RANK}.txt").write_text("\n".join(seen))
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    out, mode, args = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"rank{RANK}.pid").write_text(str(os.getpid()))
    if mode == "train":
        train(out, args)
    else:
        checkpoints(out, *args)
