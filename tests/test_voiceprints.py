"""Voiceprint store: voiceprint maths, re-enrolment, refusals, and atomicity under a crash."""
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from speechbrain_ext.voiceprints import APPLICATION_ID, VoiceprintError, VoiceprintStore, model_hash

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(3)


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture
def store(tmp_path):
    """A store with alice (2 utterances) and bob (1), dimension 4, model hash 'm1'."""
    with VoiceprintStore(tmp_path / "vp.db", model_hash="m1", model_name="model-one", create=True) as s:
        s.save("alice", np.array([[1.0, 0, 0, 0], [0, 2.0, 0, 0]]), ["a1.wav", "a2.wav"])
        s.save("bob", np.array([[0, 0, 3.0, 0]]), ["b1.wav"])
        yield s


def test_schema_markers_and_wal(store):
    db = store.connection
    assert db.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert db.execute("PRAGMA user_version").fetchone()[0] == 1
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_voiceprint_is_mean_of_normalised_embeddings(store):
    assert np.allclose(store.voiceprint("alice"), [0.5, 0.5, 0, 0])
    assert np.allclose(store.embeddings("alice"), [[1, 0, 0, 0], [0, 1, 0, 0]])
    ids, matrix = store.voiceprints()
    assert ids == ["alice", "bob"] and matrix.shape == (2, 4) and matrix.dtype == np.float32
    assert [(s.speaker_id, s.num_utterances) for s in store.speakers()] == [("alice", 2), ("bob", 1)]


def test_replace_and_append(store):
    assert store.save("alice", np.array([[0, 0, 0, 5.0]]), ["a3.wav"], replace=False) == 3
    assert np.allclose(store.voiceprint("alice"), [1 / 3, 1 / 3, 0, 1 / 3])
    assert store.save("alice", np.array([[0, 0, 0, 5.0]]), ["a4.wav"]) == 1
    assert np.allclose(store.voiceprint("alice"), [0, 0, 0, 1])
    rows = store.connection.execute("SELECT source FROM embeddings WHERE speaker_id='alice'").fetchall()
    assert rows == [("a4.wav",)]


def test_unknown_remove_and_empty(store):
    with pytest.raises(VoiceprintError, match=r"unknown speaker id 'carol'"):
        store.voiceprint("carol")
    store.remove("alice")
    assert store.connection.execute("SELECT COUNT(*) FROM embeddings WHERE speaker_id='alice'").fetchone()[0] == 0
    store.remove("bob")
    for call in (lambda: store.voiceprint("bob"), store.voiceprints, lambda: store.remove("bob")):
        with pytest.raises(VoiceprintError, match="no speakers are enrolled"):
            call()


def test_bad_embeddings_and_ids(store):
    with pytest.raises(VoiceprintError, match="zero or has NaN"):
        store.save("carol", np.array([[np.nan, 1, 0, 0]]), ["c.wav"])
    with pytest.raises(VoiceprintError, match="one source each"):
        store.save("carol", np.ones((2, 4)), ["c.wav"])
    with pytest.raises(VoiceprintError, match="non-empty"):
        store.save(" carol", np.ones((1, 4)), ["c.wav"])


def test_model_mismatch_refused(store, tmp_path):
    with pytest.raises(VoiceprintError, match=r"made by model model-one \(hash m1\), not by model two \(hash m2\)"):
        VoiceprintStore(store.path, model_hash="m2", model_name="two")
    with VoiceprintStore(store.path) as no_model:  # listing needs no model ...
        assert no_model.count() == 2
        with pytest.raises(VoiceprintError, match="needs the model's hash"):  # ... writing does
            no_model.save("carol", np.ones((1, 4)), ["c.wav"])


def test_model_hash_ignores_location_only(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "embedding_model.ckpt").write_bytes(b"w")
        (tmp_path / name / "hyperparams.yaml").write_text(f"pretrained_path: /{name}\nemb_dim: 4\n")
    assert model_hash(tmp_path / "a") == model_hash(tmp_path / "b")
    (tmp_path / "b" / "embedding_model.ckpt").write_bytes(b"w2")
    assert model_hash(tmp_path / "a") != model_hash(tmp_path / "b")


def test_files_that_are_not_ours(tmp_path):
    with pytest.raises(VoiceprintError, match="no such voiceprint database"):
        VoiceprintStore(tmp_path / "missing.db", model_hash="m1")
    junk = tmp_path / "junk.db"
    junk.write_bytes(os.urandom(4096))
    with pytest.raises(VoiceprintError, match="not a speechbrain_ext voiceprint database"):
        VoiceprintStore(junk, model_hash="m1", create=True)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE speakers (name TEXT)")
    with pytest.raises(VoiceprintError, match=r"not a speechbrain_ext voiceprint database \(SQLite application_id 0"):
        VoiceprintStore(other, model_hash="m1", create=True)
    assert sqlite3.connect(other).execute("SELECT name FROM sqlite_master").fetchall() == [("speakers",)]


def test_read_only_database(store):
    os.chmod(store.path, 0o444)
    try:
        with VoiceprintStore(store.path, model_hash="m1") as ro:
            assert ro.count() == 2  # reading still works
            with pytest.raises(VoiceprintError, match="read-only"):
                ro.save("carol", np.ones((1, 4)), ["c.wav"])
            with pytest.raises(VoiceprintError, match="read-only"):
                ro.remove("bob")
    finally:
        os.chmod(store.path, 0o644)


def test_exception_mid_transaction_rolls_back(store, monkeypatch):
    before = store.voiceprint("alice")

    def fail(self, speaker_id):
        raise RuntimeError("injected after the inserts")

    monkeypatch.setattr(VoiceprintStore, "_embedding_matrix", fail)
    with pytest.raises(RuntimeError, match="injected"):
        store.save("alice", RNG.standard_normal((3, 4)), ["x", "y", "z"])
    monkeypatch.undo()
    assert np.array_equal(store.voiceprint("alice"), before)
    assert len(store.embeddings("alice")) == 2 and not store.connection.in_transaction


CRASH_SCRIPT = """
import sys, time
import numpy as np
from speechbrain_ext.voiceprints import VoiceprintStore
store = VoiceprintStore(sys.argv[1], model_hash="m1")
inserted = []
def trace(sql):
    if sql.startswith("INSERT INTO embeddings"):
        inserted.append(sql)
        if len(inserted) == 3:  # old rows deleted, 3 of 5 new rows written, not committed
            open(sys.argv[2], "w").close()
            time.sleep(60)
store.connection.set_trace_callback(trace)
store.save("alice", np.ones((5, 4)), ["new.wav"] * 5)
"""


def test_sigkill_mid_enrolment_leaves_old_voiceprint(store, tmp_path):
    before, marker = store.voiceprint("alice"), tmp_path / "in_transaction"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(store.path), str(marker)],
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 30
    while not marker.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert marker.exists(), "the enrolling process never reached the middle of its transaction"
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=10) == -signal.SIGKILL
    with VoiceprintStore(store.path, model_hash="m1") as after:
        assert after.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert np.array_equal(after.voiceprint("alice"), before)
        sources = after.connection.execute("SELECT source FROM embeddings WHERE speaker_id='alice'").fetchall()
        assert sources == [("a1.wav",), ("a2.wav",)]
        assert after.save("alice", np.ones((5, 4)), ["new.wav"] * 5) == 5  # no stale lock left behind
