"""Training under ``torchrun`` with 2 gloo ranks on CPU: past one epoch, checkpoints deleted, resume after SIGKILL.

Every run has a timeout: a hang (ranks waiting on different collectives) fails
the test and its ranks are killed.
"""
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from speechbrain.utils.checkpoints import Checkpointer

from recipe_utils import ROOT, train_command

WORKER = ROOT / "tests" / "ddp_worker.py"
TIMEOUT_S = 150  # one torchrun; ~15 s when the machine is not busy
EPOCHS = 3       # so that checkpoints are deleted at least twice


def torchrun(ranks_dir: Path, *args: str) -> list:
    """``torchrun --standalone --nproc_per_node=2 tests/ddp_worker.py ranks_dir <args>``."""
    return [str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2",
            str(WORKER), str(ranks_dir), *args]


def recipe_run(yaml: str, corpus: Path, out: Path, *extra: str) -> SimpleNamespace:
    """Paths and command of a 2-rank gloo run of recipes/train.py in ``out``."""
    ranks = out / "ranks"
    cmd = torchrun(ranks, "train", *train_command(yaml, corpus, out, f"--number_of_epochs={EPOCHS}",
                                                  "--distributed_backend=gloo", *extra)[2:])
    return SimpleNamespace(cmd=cmd, ranks=ranks, log=out / "train_log.txt", save=out / "save")


def start(cmd: list, output: Path) -> subprocess.Popen:
    """Start ``cmd`` with stdout and stderr to ``output`` (a file, so a long run never blocks on a pipe)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w") as f:
        return subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))


def finish(proc: subprocess.Popen, ranks: Path, output: Path, timeout: float = TIMEOUT_S) -> str:
    """Wait for a run from ``start``; its output. Fails the test, killing the ranks, on a timeout."""
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_ranks(ranks, (0, 1))
        proc.kill()
        proc.wait()
        pytest.fail(f"torchrun hung: not finished after {timeout} s\n{output.read_text()[-3000:]}")
    return output.read_text()


def kill_ranks(ranks: Path, which) -> None:
    """SIGKILL ranks by their pid files: torchrun starts each rank in a session of its own,
    so killing torchrun's process group would leave them running."""
    for rank in which:
        pid_file = ranks / f"rank{rank}.pid"
        if not pid_file.exists():
            continue
        pid = int(pid_file.read_text())
        try:
            if b"ddp_worker.py" in Path(f"/proc/{pid}/cmdline").read_bytes():  # not a reused pid
                os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass  # already gone


def logged_epochs(log: Path) -> list:
    """Epoch number of each line of a train_log.txt."""
    return [int(m.group(1)) for m in re.finditer(r"^epoch: (\d+),", log.read_text(), re.M)]


def assert_ranks_equal(ranks: Path) -> None:
    """Both ranks made the same number of steps and hold the same parameters."""
    rank0, rank1 = (torch.load(ranks / f"rank{r}.pt") for r in (0, 1))
    assert rank0["steps"] == rank1["steps"] > 0
    assert rank0["state"].keys() == rank1["state"].keys()
    for key, value in rank0["state"].items():
        assert torch.equal(value, rank1["state"][key]), key


def test_ranks_agree_on_checkpoints_when_rank0_commits_late(tmp_path):
    """Rank 0's commit takes 0.5 s; rank 1 must not decide on deletions before it."""
    ranks, output = tmp_path / "ranks", tmp_path / "torchrun.log"
    proc = start(torchrun(ranks, "checkpoints", str(tmp_path / "save")), output)
    text = finish(proc, ranks, output, timeout=60)
    assert proc.returncode == 0, text[-3000:]
    seen = [(ranks / f"rank{r}.txt").read_text() for r in (0, 1)]
    assert seen[0] == seen[1]
    assert "\n" not in seen[0] and seen[0].endswith(" 0.3")  # only the best is left


@pytest.fixture(scope="module")
def pretrain(speaker_corpus, tmp_path_factory) -> SimpleNamespace:
    """The pre-training recipe, 2 ranks, 3 epochs; an intra-epoch checkpoint every 2 of the 3 steps,
    which each end-of-epoch save deletes (so deletions do not depend on the validation error).
    ``out_n_neurons`` is left null: rank 0 prepares the data, both ranks count its speakers."""
    run = recipe_run("pretrain_demo.yaml", speaker_corpus, tmp_path_factory.mktemp("ddp_pretrain"),
                     "--ckpt_interval_steps=2")
    proc = start(run.cmd, run.ranks / "torchrun.log")
    run.output = finish(proc, run.ranks, run.ranks / "torchrun.log")
    run.returncode = proc.returncode
    return run


def test_pretraining_under_ddp_runs_past_deletions_to_the_end(pretrain):
    assert pretrain.returncode == 0, pretrain.output[-3000:]
    assert logged_epochs(pretrain.log) == [1, 2, 3]
    assert pretrain.output.count("Deleted checkpoint in") >= 2
    assert_ranks_equal(pretrain.ranks)


def wait_for(condition, proc: subprocess.Popen, timeout: float = TIMEOUT_S) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the point it was to be killed at"
        assert time.time() < deadline, "the run did not reach the point it was to be killed at"
        time.sleep(0.02)


def intra_epoch_checkpoint_committed(save: Path) -> bool:
    """Whether ``save`` holds a committed intra-epoch checkpoint (read while the run deletes some)."""
    for meta in save.glob("CKPT+*/CKPT.yaml"):
        try:
            if "end-of-epoch: false" in meta.read_text():
                return True
        except FileNotFoundError:
            pass  # deleted since the glob
    return False


def test_transfer_under_ddp_resumes_after_rank0_is_killed(speaker_corpus, pretrain, tmp_path):
    """SIGKILL rank 0 in epoch 2, after a step's checkpoint (one per step); the same command resumes."""
    run = recipe_run("transfer_demo.yaml", speaker_corpus, tmp_path, f"--pretrained_path={pretrain.save}",
                     "--out_n_neurons=4", "--topk=2", "--dev_ratio=0", "--long_len=1.0",
                     "--short_scales=[0.5,0.75]", "--subcenter_drop_epoch=2",  # the drop all-reduces counts
                     "--ckpt_interval_steps=1", "--generate_augment_sources=False",
                     "--wav_augment=null", "--noise_csv=null", "--rir_csv=null")
    killed = start(run.cmd, run.ranks / "killed.log")
    # end-of-epoch saves delete intra-epoch checkpoints before the epoch is logged
    wait_for(lambda: run.log.exists() and "epoch: 1," in run.log.read_text()
             and intra_epoch_checkpoint_committed(run.save), killed)
    kill_ranks(run.ranks, (0,))
    finish(killed, run.ranks, run.ranks / "killed.log")
    assert killed.returncode != 0 and EPOCHS not in logged_epochs(run.log)
    last_committed = Checkpointer(run.save).find_checkpoint()  # the newest, as a restart loads

    resumed = start(run.cmd, run.ranks / "resumed.log")
    output = finish(resumed, run.ranks, run.ranks / "resumed.log")
    assert resumed.returncode == 0, output[-3000:]
    assert f"Loading a checkpoint from {last_committed.path}" in output
    assert "Going into epoch 1\n" not in output
    assert logged_epochs(run.log) == [1, 2, 3]  # none repeated
    assert "train msce_short" in run.log.read_text()  # the long/short joint loss was trained
    assert_ranks_equal(run.ranks)
