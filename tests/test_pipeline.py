"""The shared pipeline stages: resumable, recorded, and loud when a folder holds another command's run."""
import json
import sys

import pytest

from speechbrain_ext.pipeline import RUN_MARKER, Stage, StageError, flags, step_time


def writer(path, text="x", status=0):
    """A command that appends ``text`` to ``path`` and exits with ``status``."""
    code = f"open({str(path)!r}, 'a').write({text!r}); raise SystemExit({status})"
    return [sys.executable, "-c", code]


def test_a_finished_training_stage_is_recorded_and_skipped(tmp_path):
    out, marker = tmp_path / "out.txt", tmp_path / "run" / RUN_MARKER
    marker.parent.mkdir()
    later = tmp_path / "results.json"
    later.write_text("{}")
    stage = Stage("train", writer(out), marker, invalidates=[later])
    record = stage.run()
    assert json.loads(marker.read_text())["command"] == stage.cmd and record["exit"] == 0
    assert not later.exists()  # results made from an older run of this stage are dropped
    stage.run()
    assert out.read_text() == "x"  # the second call skipped the command


def test_a_folder_with_another_command_is_an_error(tmp_path):
    marker = tmp_path / RUN_MARKER
    Stage("train", writer(tmp_path / "a.txt"), marker).run()
    with pytest.raises(StageError, match="another command"):
        Stage("train", writer(tmp_path / "b.txt"), marker).run()


def test_a_failing_stage_names_itself_and_shows_its_log(tmp_path):
    log = tmp_path / "stage.log"
    cmd = [sys.executable, "-c", "print('the reason'); raise SystemExit(3)"]
    with pytest.raises(StageError, match=r"stage 'broken' failed \(exit 3\)[\s\S]*the reason"):
        Stage("broken", cmd, tmp_path / RUN_MARKER, log).run()
    assert not (tmp_path / RUN_MARKER).exists()
    assert Stage("reject", writer(tmp_path / "c.txt", status=1), ok=(0, 1)).run()["exit"] == 1


def test_step_time_is_the_mean_of_the_logged_epochs(tmp_path):
    log = tmp_path / "train_log.txt"
    assert step_time(log) is None
    log.write_text("epoch: 1 - train loss: 2.0, train step_time_s: 0.5\n"
                   "epoch: 2 - train loss: 1.0, train step_time_s: 1.5\n")
    assert step_time(log) == pytest.approx(1.0)
    assert flags({"seed": 7, "skip_prep": True}) == ["--seed=7", "--skip_prep=True"]


def test_a_folder_of_an_older_ablation_is_an_error(tmp_path):
    (tmp_path / "ablation_run.json").write_text('{"command": []}')
    with pytest.raises(StageError, match="older ablation"):
        Stage("train", writer(tmp_path / "a.txt"), tmp_path / RUN_MARKER).run()
    assert not (tmp_path / "a.txt").exists()
