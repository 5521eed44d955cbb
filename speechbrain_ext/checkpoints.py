"""A SpeechBrain ``Checkpointer`` whose checkpoints appear only when complete.

SpeechBrain 1.1.2 writes ``CKPT.yaml`` first and the parameter files after
it, and a folder counts as a checkpoint as soon as ``CKPT.yaml`` exists. A run
killed while saving (SIGKILL, OOM, pre-emption) therefore leaves a checkpoint
with a truncated ``.ckpt`` that the restarted run loads and crashes on
(``EOFError``). Here the meta file is written under a temporary name and
renamed into place after every parameter file is on disk, so an interrupted
save is simply not a checkpoint.
"""
import os
import pathlib

from speechbrain.utils.checkpoints import METAFNAME, Checkpointer
from speechbrain.utils.distributed import if_main_process

PENDING_SUFFIX = ".pending"


class AtomicCheckpointer(Checkpointer):
    """``Checkpointer`` with an atomic commit of each checkpoint (same arguments)."""

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):
        fpath = pathlib.Path(fpath)
        pending = fpath.with_name(fpath.name + PENDING_SUFFIX)
        return super()._save_checkpoint_metafile(pending, meta_to_include, end_of_epoch)

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=20):
        checkpoint = super().save_checkpoint(meta, end_of_epoch, name, verbosity)
        if if_main_process() and checkpoint is not None:
            for path in checkpoint.paramfiles.values():
                with open(path, "rb") as f:
                    os.fsync(f.fileno())
            final = checkpoint.path / METAFNAME
            os.replace(final.with_name(METAFNAME + PENDING_SUFFIX), final)
        return checkpoint
