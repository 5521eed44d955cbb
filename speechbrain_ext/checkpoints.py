"""Checkpoints that appear only when complete, agreed on by every DDP rank; one lookup.

SpeechBrain 1.1.2 writes ``CKPT.yaml`` first and the parameter files after it, and a folder counts as a
checkpoint as soon as ``CKPT.yaml`` exists. A run killed while saving (SIGKILL, OOM, pre-emption) therefore
leaves a checkpoint with a truncated ``.ckpt`` that the restarted run loads and crashes on (``EOFError``).
Here the meta file is written under a temporary name and renamed into place after every parameter file is on
disk, so an interrupted save is simply not a checkpoint.

Under DDP the commit is followed by a barrier: ``save_and_keep_only`` lists the checkpoints on every rank
right after saving to decide what to delete, and each deletion is a collective (``_delete_checkpoint`` is
``main_process_only``, which broadcasts). A rank that listed before rank 0's commit would see one checkpoint
fewer, make fewer deletion calls than rank 0 and leave the ranks waiting on different collectives forever.

Picking a run's checkpoint is ``model_folder.best_checkpoint``.
"""
import logging
import os
import pathlib
from typing import Iterable

from speechbrain.utils.checkpoints import METAFNAME, Checkpointer
from speechbrain.utils.distributed import ddp_barrier

PENDING_SUFFIX = ".pending"
ERROR_KEY = "ErrorRate"  # meta key of the validation error (see PretrainBrain.log_and_save)


class AtomicCheckpointer(Checkpointer):
    """``Checkpointer`` with an atomic commit of each checkpoint, safe under DDP (same arguments)."""

    def _save_checkpoint_metafile(self, fpath, meta_to_include={}, end_of_epoch=True):
        """SpeechBrain's meta file, written as ``CKPT.yaml.pending``. This private hook is the only place where
        SpeechBrain names the meta file: ``save_checkpoint`` has no public option to write it last or elsewhere
        (tests/test_checkpoints.py fails if that changes)."""
        fpath = pathlib.Path(fpath)
        pending = fpath.with_name(fpath.name + PENDING_SUFFIX)
        return super()._save_checkpoint_metafile(pending, meta_to_include, end_of_epoch)

    def save_checkpoint(self, meta={}, end_of_epoch=True, name=None, verbosity=logging.INFO):
        """SpeechBrain's save, then the commit on the main process, then a barrier, so that every rank sees the
        same committed checkpoints before ``delete_checkpoints`` (or anything else) lists them. SpeechBrain
        needs none because it writes ``CKPT.yaml`` before its own broadcast of the folder name."""
        checkpoint = super().save_checkpoint(meta, end_of_epoch, name, verbosity)
        if checkpoint is not None:  # the main process, which wrote the files
            _commit(checkpoint.path, checkpoint.paramfiles.values())
        ddp_barrier()
        return checkpoint


def _commit(folder: pathlib.Path, paramfiles: Iterable[pathlib.Path]) -> None:
    """Make ``folder`` a checkpoint: fsync its files, rename the pending meta file, fsync the folder.

    The files are synced before the rename so that a crash of the machine (not only of the process) cannot
    leave a committed meta file beside parameter files that never reached the disk.
    """
    pending = folder / (METAFNAME + PENDING_SUFFIX)
    for path in [*paramfiles, pending]:
        _fsync(path, os.O_RDONLY)
    os.replace(pending, folder / METAFNAME)
    _fsync(folder, os.O_RDONLY | os.O_DIRECTORY)  # makes the rename itself durable


def _fsync(path: pathlib.Path, flags: int) -> None:
    """``fsync`` of a file or folder (a folder cannot be opened with ``open()``)."""
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
