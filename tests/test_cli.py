"""``python -m speechbrain_ext``: commands, JSON output, exit codes and one-line errors.

Commands run in process through ``main(argv)`` (the model is loaded per call,
as from a shell); the entry point itself is run as a subprocess for the
commands that do not import torch.
"""
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_ext.access.cli import EXIT_ACCEPT, EXIT_ERROR, EXIT_REJECT, main

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("single_thread")


def cli(capsys, *argv):
    """Run ``main(argv)``; returns (status, stdout, stderr)."""
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def demo_db(tiny_model, speaker_corpus, tmp_path_factory):
    """A database with spk0 (utt0;utt1 + utt2), spk1 (utt0) and spk2 (utt0) enrolled through the CLI."""
    db = tmp_path_factory.mktemp("cli") / "vp.db"
    spk0 = speaker_corpus / "spk0"
    assert main(["enroll", "--model", str(tiny_model), "--db", str(db), "spk0",
                 f"{spk0 / 'utt0.wav'};{spk0 / 'utt1.wav'}", str(spk0 / "utt2.wav")]) == 0
    for spk in ("spk1", "spk2"):
        assert main(["enroll", "--model", str(tiny_model), "--db", str(db), spk,
                     str(speaker_corpus / spk / "utt0.wav")]) == 0
    return db


def test_enroll_list_json(demo_db, tiny_model, speaker_corpus, capsys):
    status, out, err = cli(capsys, "list", "--db", demo_db, "--json")
    assert status == 0 and err == ""
    listed = {s["speaker_id"]: s["num_utterances"] for s in json.loads(out)}
    assert listed == {"spk0": 3, "spk1": 1, "spk2": 1}
    status, out, _ = cli(capsys, "enroll", "--model", tiny_model, "--db", demo_db, "spk2",
                         speaker_corpus / "spk2" / "utt1.wav", "--append", "--json")
    assert status == 0 and json.loads(out) == {"speaker_id": "spk2", "num_utterances": 2}
    status, out, _ = cli(capsys, "list", "--db", demo_db)
    assert status == 0 and out.splitlines()[2].startswith("spk2\t2 utterance(s)\tenrolled ")


def test_verify_exit_codes_follow_threshold(demo_db, tiny_model, speaker_corpus, capsys):
    genuine = speaker_corpus / "spk1" / "utt0.wav"  # spk1's only enrolment utterance: score 1
    verify = ["verify", "--model", tiny_model, "--db", demo_db, "--allow-replay", "spk1"]  # files are reused
    status, out, err = cli(capsys, *verify, genuine, "--json")
    decision = json.loads(out)
    assert status == EXIT_ACCEPT and err == "" and decision["accepted"] and decision["threshold"] == 0.98
    assert decision["score"] == pytest.approx(1.0, abs=1e-5) and decision["score_kind"] == "cosine"
    assert decision["reason"] is None
    impostor = speaker_corpus / "spk2" / "utt0.wav"
    status, out, _ = cli(capsys, *verify, impostor, "--threshold", "0.9999")
    assert status == EXIT_REJECT and out.startswith("reject spk1: score ") and "threshold 0.9999" in out
    status, out, _ = cli(capsys, *verify, impostor, "--threshold", "-1")
    assert status == EXIT_ACCEPT and out.startswith("accept spk1")


def test_identify(demo_db, tiny_model, speaker_corpus, capsys):
    probe = speaker_corpus / "spk2" / "utt0.wav"  # spk2's enrolment file, reused: replay checks off
    identify = ["identify", "--model", tiny_model, "--db", demo_db, "--allow-replay"]
    status, out, _ = cli(capsys, *identify, probe, "--top-k", "2", "--json")
    ranked = json.loads(out)
    assert len(ranked) == 2 and ranked[0]["speaker_id"] == "spk2" and ranked[0]["score"] >= ranked[1]["score"]
    assert status == (EXIT_ACCEPT if ranked[0]["accepted"] else EXIT_REJECT)
    status, out, _ = cli(capsys, *identify, probe, "--threshold", "2")
    assert status == EXIT_REJECT and out.splitlines()[0].startswith("1. spk2  ") and len(out.splitlines()) == 3


@pytest.fixture(scope="module")
def bad(tiny_model, speaker_corpus, tmp_path_factory):
    """Inputs for the bad-input table: files and databases."""
    d = tmp_path_factory.mktemp("cli_bad")
    sf.write(d / "short.wav", (0.1 * np.random.default_rng(0).standard_normal(4800)).astype("float32"), 16000)
    (d / "corrupt.wav").write_bytes(b"not audio at all")
    (d / "not_ours.db").write_bytes(b"SQLite format 3\x00" + os.urandom(2000))
    with sqlite3.connect(d / "other_app.db") as db:
        db.execute("CREATE TABLE t (x)")
    empty = d / "empty.db"
    assert main(["enroll", "--model", str(tiny_model), "--db", str(empty), "gone",
                 str(speaker_corpus / "spk3" / "utt0.wav")]) == 0
    assert main(["remove", "--db", str(empty), "gone"]) == 0
    other_model = shutil.copytree(tiny_model, d / "other_model")
    (other_model / "embedding_model.ckpt").write_bytes((other_model / "embedding_model.ckpt").read_bytes() + b"x")
    return {"dir": d, "empty": empty, "other_model": other_model}


BAD_INPUTS = {
    "unknown speaker": (["spk9", "{probe}"], {}, "unknown speaker id 'spk9'"),
    "empty database": (["spk0", "{probe}"], {"db": "{empty}"}, "no speakers are enrolled"),
    "missing model": (["spk0", "{probe}"], {"model": "{dir}/nowhere"}, "nowhere: no such folder"),
    "different model": (["spk0", "{probe}"], {"model": "{other_model}"}, "voiceprints were made by model"),
    "corrupt audio": (["spk0", "{dir}/corrupt.wav"], {}, "corrupt.wav: cannot read audio"),
    "short audio": (["spk0", "{dir}/short.wav"], {}, r"short.wav: too short \(0.30 s, minimum 0.5 s\)"),
    "missing audio": (["spk0", "{dir}/absent.wav"], {}, "absent.wav: no such file"),
    "not a database": (["spk0", "{probe}"], {"db": "{dir}/not_ours.db"}, "not a speechbrain_ext voiceprint database"),
    "another app's db": (["spk0", "{probe}"], {"db": "{dir}/other_app.db"}, r"application_id 0, expected"),
    "missing db": (["spk0", "{probe}"], {"db": "{dir}/absent.db"}, "no such voiceprint database"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_verify_bad_input_one_line_exit_2(case, demo_db, tiny_model, speaker_corpus, bad, capsys):
    names = {"probe": speaker_corpus / "spk0" / "utt3.wav", "dir": bad["dir"], "empty": bad["empty"],
             "other_model": bad["other_model"]}
    positional, options, message = BAD_INPUTS[case]
    options = {"model": str(tiny_model), "db": str(demo_db), **options}
    argv = (["verify"] + [f"--{k}={v.format(**names)}" for k, v in options.items()]
            + [p.format(**names) for p in positional])
    status, out, err = cli(capsys, *argv)
    assert status == EXIT_ERROR and out == ""
    assert err.count("\n") == 1 and err.startswith("speechbrain-ext: error: ") and "Traceback" not in err
    assert re.search(message, err), err
    assert not (bad["dir"] / "absent.db").exists()  # verify never creates a database


def test_read_only_database(demo_db, tiny_model, speaker_corpus, capsys):
    os.chmod(demo_db, 0o400)
    try:
        probe = speaker_corpus / "spk3" / "utt0.wav"
        status, _, err = cli(capsys, "enroll", "--model", tiny_model, "--db", demo_db, "spk3", probe)
        assert status == EXIT_ERROR and err.count("\n") == 1 and "read-only" in err
        status, _, err = cli(capsys, "remove", "--db", demo_db, "spk0")
        assert status == EXIT_ERROR and "read-only" in err
        status, out, err = cli(capsys, "verify", "--model", tiny_model, "--db", demo_db, "spk0", probe)
        assert status == EXIT_ERROR and out == "" and "read-only" in err  # a claim that cannot be logged is refused
        status, out, _ = cli(capsys, "list", "--db", demo_db)
        assert status == 0 and out.startswith("spk0\t")  # reading still works
    finally:
        os.chmod(demo_db, 0o600)


def test_remove(demo_db, tiny_model, speaker_corpus, capsys):
    status, out, _ = cli(capsys, "remove", "--db", demo_db, "spk2")
    assert status == 0 and out == "removed spk2\n"
    status, _, err = cli(capsys, "remove", "--db", demo_db, "spk2")
    assert status == EXIT_ERROR and "unknown speaker id 'spk2'" in err


def test_entry_point_subprocess(demo_db, bad):
    run = [sys.executable, "-m", "speechbrain_ext"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    helped = subprocess.run(run + ["--help"], capture_output=True, text=True, env=env, timeout=60)
    assert helped.returncode == 0 and "verify" in helped.stdout and "exit" in helped.stdout.lower()
    listed = subprocess.run(run + ["list", "--db", str(demo_db)], capture_output=True, text=True, env=env, timeout=60)
    assert listed.returncode == 0 and listed.stdout.startswith("spk0\t")
    refused = subprocess.run(run + ["list", "--db", str(bad["dir"] / "not_ours.db")], capture_output=True,
                             text=True, env=env, timeout=60)
    assert refused.returncode == EXIT_ERROR and refused.stdout == ""
    assert refused.stderr.count("\n") == 1 and "not a speechbrain_ext voiceprint database" in refused.stderr
