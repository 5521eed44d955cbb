"""AtomicCheckpointer (a killed save is no checkpoint) and the one checkpoint lookup (best_checkpoint).

DDP agreement on checkpoints is tested under torchrun in test_ddp.py.
"""
from pathlib import Path

import pytest
import torch

from speechbrain_ext.checkpoints import AtomicCheckpointer
from speechbrain_ext.model_folder import best_checkpoint, best_checkpoint_epoch, resolve_embedding_checkpoint


class Killed(BaseException):
    """Stands for SIGKILL in the middle of a save: nothing after it runs."""


def make_checkpointer(save: Path, value: float) -> AtomicCheckpointer:
    """A checkpointer of an ``embedding_model`` whose weights are all ``value``, and a ``classifier``."""
    model = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(model.weight, value)
    return AtomicCheckpointer(save, {"embedding_model": model, "classifier": torch.nn.Linear(2, 1)})


def killed_save(save: Path, **meta) -> Path:
    """A save killed after ``embedding_model.ckpt`` is written, before ``classifier.ckpt``; its folder."""
    checkpointer = make_checkpointer(save, 9.0)

    def kill(obj, path):
        raise Killed

    checkpointer.custom_save_hooks["classifier"] = kill
    before = set(save.glob("CKPT+*"))
    with pytest.raises(Killed):
        checkpointer.save_checkpoint(meta=meta)
    (folder,) = set(save.glob("CKPT+*")) - before
    return folder


def test_killed_save_is_no_checkpoint_and_a_restart_loads_the_last_committed(tmp_path):
    committed = make_checkpointer(tmp_path, 1.0).save_checkpoint(meta={"epoch": 1})
    assert sorted(p.name for p in committed.path.iterdir()) == ["CKPT.yaml", "classifier.ckpt",
                                                                 "embedding_model.ckpt"]
    assert {"unixtime", "end-of-epoch", "epoch"} <= set(committed.meta)
    # SpeechBrain writes the meta file first, through the private _save_checkpoint_metafile
    # we override: if it stops doing so, CKPT.yaml is back here (or .pending is missing)
    killed = killed_save(tmp_path, epoch=2)
    assert sorted(p.name for p in killed.iterdir()) == ["CKPT.yaml.pending", "embedding_model.ckpt"]

    restarted = make_checkpointer(tmp_path, 0.0)
    loaded = restarted.recover_if_possible()
    assert loaded.path == committed.path and loaded.meta["epoch"] == 1
    assert torch.all(restarted.recoverables["embedding_model"].weight == 1.0)


def test_best_checkpoint_lowest_error_newest_on_ties_unfinished_saves_ignored(tmp_path):
    for epoch, error in enumerate([0.5, 0.3, 0.3, 0.4], start=1):
        make_checkpointer(tmp_path, epoch).save_checkpoint(meta={"ErrorRate": error, "epoch": epoch})
    make_checkpointer(tmp_path, 5.0).save_checkpoint(end_of_epoch=False)  # newest, no ErrorRate
    killed_save(tmp_path, ErrorRate=0.1, epoch=6)
    (tmp_path / "CKPT+only-pending").mkdir()
    (tmp_path / "CKPT+only-pending" / "CKPT.yaml.pending").write_text("ErrorRate: 0.0\n")

    assert best_checkpoint(tmp_path).meta["epoch"] == best_checkpoint_epoch(tmp_path) == 3
    weights = torch.load(resolve_embedding_checkpoint(str(tmp_path)))["weight"]
    assert torch.all(weights == 3.0)


def test_best_checkpoint_newest_without_error_rate_none_without_checkpoint(tmp_path):
    missing = tmp_path / "missing"
    assert best_checkpoint(missing) is None and best_checkpoint_epoch(missing) is None
    assert not missing.exists()  # a lookup creates nothing
    killed_save(tmp_path, epoch=1)
    assert best_checkpoint(tmp_path) is None
    with pytest.raises(FileNotFoundError, match="committed"):
        resolve_embedding_checkpoint(str(tmp_path))
    for epoch in (1, 2):
        make_checkpointer(tmp_path, epoch).save_checkpoint(meta={"epoch": epoch})
    assert best_checkpoint_epoch(tmp_path) == 2


def test_an_unfinished_checkpoint_folder_named_directly_is_refused(tmp_path):
    killed = killed_save(tmp_path)
    with pytest.raises(FileNotFoundError, match="unfinished checkpoint"):
        resolve_embedding_checkpoint(str(killed))
