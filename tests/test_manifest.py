"""Tests for speechbrain_ext.manifest: manifests, trial lists and score files."""
import os

import pytest
import torch

from speechbrain_ext.manifest import (ManifestError, ManifestRow, read_manifest, read_scores, read_trials,
                                      speaker_count, write_manifest, write_scores)


def write(tmp_path, text):
    path = tmp_path / "trials.txt"
    path.write_text(text)
    return path


def test_read_trials_labels_and_blank_lines(tmp_path):
    path = write(tmp_path, "e1 t1 target\n\ne1 t2 nontarget\ne2 t1 1\ne2 t2 0\n")
    assert read_trials(path, enroll_ids=["e1", "e2"], test_ids={"t1": 0, "t2": 1}) == [
        ("e1", "t1", 1),
        ("e1", "t2", 0),
        ("e2", "t1", 1),
        ("e2", "t2", 0),
    ]


@pytest.mark.parametrize(
    "text,line_no",
    [
        ("e1 t1 target\ne1 t2\n", 2),
        ("e1 t1 target extra\n", 1),
        ("e1 t1 target\n\ne1 t2 yes\n", 3),
        ("1 a.wav b.wav\n", 1),  # VoxCeleb order is not this format
    ],
)
def test_read_trials_malformed_line(tmp_path, text, line_no):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=f"trials.txt:{line_no}: expected") as info:
        read_trials(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_read_trials_empty(tmp_path, text):
    with pytest.raises(ValueError, match="trials.txt: the trial list is empty"):
        read_trials(write(tmp_path, text))


def test_read_trials_unknown_ids(tmp_path):
    path = write(tmp_path, "e1 t1 target\ne9 t1 target\n")
    with pytest.raises(ValueError, match="trials.txt:2: enrolment id 'e9'"):
        read_trials(path, enroll_ids={"e1"})
    path = write(tmp_path, "e1 t1 target\ne1 t9 0\n")
    with pytest.raises(ValueError, match="trials.txt:2: test id 't9'"):
        read_trials(path, test_ids={"t1"})
    assert len(read_trials(path)) == 2  # no id sets given: no check


def test_write_scores_round_trip(tmp_path):
    trials = [("e1", "t1", 1), ("e1", "t2", 0)]
    path = tmp_path / "scores.txt"
    write_scores(path, trials, torch.tensor([0.5, -0.125]))
    assert path.read_text() == "e1 t1 0.500000 target\ne1 t2 -0.125000 nontarget\n"
    assert os.listdir(tmp_path) == ["scores.txt"]  # no temporary file left


def test_write_scores_mismatch_leaves_file_untouched(tmp_path):
    path = tmp_path / "scores.txt"
    path.write_text("old\n")
    with pytest.raises(ValueError, match="one score per trial"):
        write_scores(path, [("e1", "t1", 1)], [0.1, 0.2])
    with pytest.raises(ValueError, match="NaN/inf"):
        write_scores(path, [("e1", "t1", 1)], [float("nan")])
    assert path.read_text() == "old\n"


def test_manifest_round_trip_keeps_rows_order_and_genre(tmp_path):
    rows = [ManifestRow("b/2", "/b.wav;/c.wav", 8000, 40000, "b", "vlog"), ManifestRow("a/1", "/a.wav", 0, 16000, "a")]
    write_manifest(tmp_path / "m.csv", rows, with_genre=True)
    assert (tmp_path / "m.csv").read_text().splitlines() == [
        "ID,duration,wav,start,stop,spk_id,genre", "b/2,2.000,/b.wav;/c.wav,8000,40000,b,vlog",
        "a/1,1.000,/a.wav,0,16000,a,"]
    assert read_manifest(tmp_path / "m.csv") == rows
    assert rows[0].files == ["/b.wav", "/c.wav"] and speaker_count(tmp_path / "m.csv") == 2


@pytest.mark.parametrize("text, message", [
    ("ID,wav,start\n", "missing column(s) stop"),
    ("ID,wav,start,stop\nx,/a.wav,0,1.5\n", "m.csv:2: start/stop must be integers"),
    ("ID,wav,start,stop\nx,/a.wav,10,10\n", "m.csv:2: need 0 <= start < stop, got 10, 10"),
    ("ID,wav,start,stop\nx,/a.wav,0,9\ny,/b.wav,0,9\nx,/c.wav,0,9\n", "m.csv:4: ID 'x' repeated"),
])
def test_bad_manifest_is_one_line_naming_file_and_line(tmp_path, text, message):
    (tmp_path / "m.csv").write_text(text)
    with pytest.raises(ManifestError) as info:
        read_manifest(tmp_path / "m.csv")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_read_scores_round_trip_and_bad_score(tmp_path):
    path = tmp_path / "scores.txt"
    write_scores(path, [("e1", "t1", 1), ("e1", "t2", 0)], [0.5, -0.125])
    trials, scores = read_scores(path)
    assert trials == [("e1", "t1", 1), ("e1", "t2", 0)] and scores.tolist() == [0.5, -0.125]
    path.write_text("e1 t1 high target\n")
    with pytest.raises(ManifestError, match="scores.txt:1: score 'high' is not a number"):
        read_scores(path)
