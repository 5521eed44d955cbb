"""Voiceprint store: voiceprint maths, re-enrolment, refusals, private files, erasure, schema
upgrade, and atomicity under a crash and with two writers."""
import logging
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from speechbrain_ext.access.store import (_SCHEMA, _UPGRADES, APPLICATION_ID, SCHEMA_VERSION, Challenge, Event,
                                         VoiceprintError, VoiceprintStore)
from speechbrain_ext.model_folder import model_hash

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
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1
    assert {"meta", "speakers", "embeddings", "events"} <= {r[0] for r in db.execute("SELECT name FROM sqlite_master")}


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
    before = other.read_bytes()
    with pytest.raises(VoiceprintError, match=r"not a speechbrain_ext voiceprint database \(SQLite application_id 0"):
        VoiceprintStore(other, model_hash="m1", create=True)
    assert other.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["junk.db", "other.db"]
    future = tmp_path / "future.db"
    with sqlite3.connect(future) as db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 4")
        db.execute("CREATE TABLE meta (key TEXT)")
    with pytest.raises(VoiceprintError, match="schema version 4, this code reads versions 1 to 3"):
        VoiceprintStore(future)


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

    monkeypatch.setattr(VoiceprintStore, "embeddings", fail)
    with pytest.raises(RuntimeError, match="injected"):
        store.save("alice", RNG.standard_normal((3, 4)), ["x", "y", "z"])
    monkeypatch.undo()
    assert np.array_equal(store.voiceprint("alice"), before)
    assert len(store.embeddings("alice")) == 2 and not store.connection.in_transaction


CRASH_SCRIPT = """
import sys, time
import numpy as np
from speechbrain_ext.access.store import Event, VoiceprintStore
store = VoiceprintStore(sys.argv[1], model_hash="m1")
inserted = []
def trace(sql):
    if sql.startswith("INSERT INTO embeddings"):
        inserted.append(sql)
        if len(inserted) == 3:  # old rows deleted, 3 of 5 new rows written, not committed
            open(sys.argv[2], "w").close()
            time.sleep(60)
store.connection.set_trace_callback(trace)
store.save("alice", np.ones((5, 4)), ["new.wav"] * 5, event=Event("enroll", "alice", "enrolled"))
"""


def test_sigkill_mid_enrolment_leaves_old_voiceprint_and_events(store, tmp_path):
    for n in range(3):
        store.log_event(Event("verify", "alice", "reject", score=0.1 * n, threshold=0.5, audio_sha256=f"{n:064x}"))
    before, events, marker = store.voiceprint("alice"), store.events(), tmp_path / "in_transaction"
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
        assert after.events() == events  # every committed event kept, the killed one not half-written
        assert after.save("alice", np.ones((5, 4)), ["new.wav"] * 5) == 5  # no stale lock left behind


def file_modes(path: Path) -> dict:
    """Permission bits of the database, its -wal and its -shm (those that exist)."""
    return {suffix: stat.S_IMODE(os.stat(f"{path}{suffix}").st_mode)
            for suffix in ("", "-wal", "-shm") if os.path.exists(f"{path}{suffix}")}


@pytest.mark.parametrize("umask", [0o000, 0o022, 0o077])
def test_new_database_files_are_private(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with VoiceprintStore(tmp_path / "vp.db", model_hash="m1", create=True) as s:
            s.save("alice", np.ones((1, 4)), ["a.wav"])
            modes = file_modes(s.path)  # -wal and -shm exist while the connection is open
    finally:
        os.umask(previous)
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}


def test_database_open_to_others_warns_once_and_still_works(store, caplog):
    with caplog.at_level(logging.WARNING, logger="speechbrain_ext.access.store"):
        VoiceprintStore(store.path).close()
        assert caplog.records == []  # private: no warning
        os.chmod(store.path, 0o644)
        for _ in range(2):
            with VoiceprintStore(store.path, model_hash="m1") as shared:
                assert shared.count() == 2
    assert len(caplog.records) == 1
    assert "vp.db: voiceprints are open to other users (mode vp.db 644)" in caplog.records[0].getMessage()


def test_new_store_creates_no_file_until_its_first_write(tmp_path, monkeypatch):
    path = tmp_path / "vp.db"
    with VoiceprintStore(path, model_hash="m1", create=True) as s:
        assert s.count() == 0 and s.speakers() == [] and s.events() == []
        for call in (lambda: s.voiceprint("alice"), s.voiceprints, lambda: s.remove("alice")):
            with pytest.raises(VoiceprintError, match="no speakers are enrolled"):
                call()
        with pytest.raises(VoiceprintError, match="zero or has NaN"):
            s.save("alice", np.zeros((1, 4)), ["a.wav"])
        monkeypatch.setattr(VoiceprintStore, "embeddings", lambda *a: 1 / 0)  # fails inside the transaction
        with pytest.raises(ZeroDivisionError):
            s.save("alice", np.ones((1, 4)), ["a.wav"])
    assert [p.name for p in tmp_path.iterdir()] == ["vp.db"]  # created by the failed write, but without schema:
    with pytest.raises(VoiceprintError, match="no such voiceprint database"):
        VoiceprintStore(path)  # ... it is no database yet
    monkeypatch.undo()
    with VoiceprintStore(path, model_hash="m1", create=True) as s:
        assert s.save("alice", np.ones((1, 4)), ["a.wav"]) == 1


def disk_bytes(path: Path) -> bytes:
    """Everything SQLite keeps on disk for a database: the file and its WAL."""
    return b"".join(Path(f"{path}{suffix}").read_bytes() for suffix in ("", "-wal")
                    if os.path.exists(f"{path}{suffix}"))


def test_removal_and_re_enrolment_erase_the_old_bytes(tmp_path):
    with VoiceprintStore(tmp_path / "vp.db", model_hash="m1", create=True) as s:
        for spk in ("alice", "bob", "carol"):
            s.save(spk, RNG.standard_normal((3, 64)), [f"{spk}.wav"] * 3)
        stored = {spk: [row.tobytes() for row in s.embeddings(spk)] + [s.voiceprint(spk).tobytes()]
                  for spk in ("alice", "bob", "carol")}
        assert all(blob in disk_bytes(s.path) for blobs in stored.values() for blob in blobs)
        s.remove("alice")
        s.save("bob", RNG.standard_normal((2, 64)), ["bob_again.wav"] * 2)  # re-enrolment replaces bob's
        on_disk = disk_bytes(s.path)
        assert not any(blob in on_disk for blob in stored["alice"] + stored["bob"])
        assert all(blob in on_disk for blob in stored["carol"])  # the search does find what is still stored


def make_schema_1_database(path: Path) -> Path:
    """A database as schema version 1 wrote it (no events table), with alice enrolled, model hash m1."""
    with sqlite3.connect(path) as db:
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        db.executemany("INSERT INTO meta VALUES (?, ?)", [("model_hash", "m1"), ("model_name", "one")])
        db.execute("INSERT INTO speakers VALUES ('alice', ?, 1, 't', 't')", (np.ones(4, np.float32).tobytes(),))
        db.execute("INSERT INTO embeddings VALUES (1, 'alice', ?, 'a.wav', 't')", (np.ones(4, np.float32).tobytes(),))
    return path


def make_schema_2_database(path: Path) -> Path:
    """A database as schema version 2 wrote it (events, no challenges): alice enrolled, one verify event."""
    make_schema_1_database(path)
    with sqlite3.connect(path) as db:
        db.executescript(_UPGRADES[1])
        db.execute("PRAGMA user_version = 2")
        db.execute("INSERT INTO events (time, command, speaker_id, score, threshold, decision, model_hash) "
                   "VALUES ('2024-05-01T08:00:00Z', 'verify', 'alice', 0.7, 0.5, 'accept', 'm1')")
    return path


def schema_state(path: Path) -> tuple:
    """(user_version, has events, has challenges, the events' columns)."""
    with sqlite3.connect(path) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        columns = [r[1] for r in db.execute("PRAGMA table_info(events)")]
        return db.execute("PRAGMA user_version").fetchone()[0], "events" in tables, "challenges" in tables, columns


def test_schema_1_is_upgraded_in_one_transaction(tmp_path, monkeypatch):
    path = make_schema_1_database(tmp_path / "v1.db")
    monkeypatch.setitem(_UPGRADES, 1, _UPGRADES[1] + "; CREATE TABLE events (x)")
    with pytest.raises(VoiceprintError, match=r"cannot write the voiceprint database \(table events already exists"):
        VoiceprintStore(path, model_hash="m1")  # the last statement of the upgrade fails ...
    assert schema_state(path)[:3] == (1, False, False)  # ... and none of it is kept
    monkeypatch.undo()
    with VoiceprintStore(path, model_hash="m1") as upgraded:
        assert schema_state(path)[:3] == (3, True, True)
        assert np.array_equal(upgraded.voiceprint("alice"), np.ones(4)) and upgraded.events() == []
        upgraded.log_event(Event("remove", "bob", "error", error="unknown speaker id 'bob'"))
        assert [(e.command, e.model_hash) for e in upgraded.events()] == [("remove", "m1")]


def test_schema_2_gains_challenges_in_one_transaction(tmp_path, monkeypatch):
    path = make_schema_2_database(tmp_path / "v2.db")
    before = schema_state(path)
    assert before[:3] == (2, True, False) and "prompt" not in before[3]
    monkeypatch.setitem(_UPGRADES, 2, _UPGRADES[2] + "; CREATE TABLE speakers (x)")
    with pytest.raises(VoiceprintError, match=r"table speakers already exists"):
        VoiceprintStore(path, model_hash="m1")  # the last statement of the upgrade fails ...
    assert schema_state(path) == before  # ... and neither the table nor the new columns are kept
    monkeypatch.undo()
    with VoiceprintStore(path, model_hash="m1") as upgraded:
        version, _, challenges, columns = schema_state(path)
        assert (version, challenges) == (3, True) and columns[-3:] == ["prompt", "recognised", "nonce"]
        old = upgraded.events()  # the old event is kept, with the new fields empty
        assert [(e.command, e.decision, e.score, e.prompt, e.nonce, e.id) for e in old] == [
            ("verify", "accept", 0.7, None, None, 1)]
        issued = Challenge("n1", "alice", "123456", 100.0)
        upgraded.add_challenge(issued, 40.0, Event("challenge", "alice", "issued", prompt="123456", nonce="n1"))
        assert upgraded.challenge("n1") == (issued, None) and upgraded.challenge("n2") == (None, None)
        assert [(e.command, e.prompt, e.nonce, e.id) for e in upgraded.events()][1:] == [
            ("challenge", "123456", "n1", 2)]


def test_challenges_are_erased_with_their_speaker(store):
    store.add_challenge(Challenge("n1", "alice", "123456", 100.0), 40.0, Event("challenge", "alice", "issued"))
    with pytest.raises(VoiceprintError, match="unknown speaker id 'carol'"):
        store.add_challenge(Challenge("n2", "carol", "1", 100.0), 40.0, Event("challenge", "carol", "issued"))
    store.spend_challenge("n1", 50.0)
    store.spend_challenge("n1", 60.0)  # spending is once: the first time stays
    assert store.challenge("n1") == (Challenge("n1", "alice", "123456", 100.0), 50.0)
    store.remove("alice")
    assert store.challenge("n1") == (None, None)


def test_read_only_schema_1_is_refused(tmp_path):
    path = make_schema_1_database(tmp_path / "v1.db")
    os.chmod(path, 0o444)
    before = path.read_bytes()
    with pytest.raises(VoiceprintError, match=r"v1.db: voiceprint schema version 1 needs an upgrade to version 3, "
                                              r"but the voiceprint database is read-only \(file permissions 0o444\)$"):
        VoiceprintStore(path)
    assert path.read_bytes() == before


TOGETHER = """
import sys, time
from pathlib import Path
db, name, folder = sys.argv[1], sys.argv[2], Path(sys.argv[3])
def wait_for_go():
    (folder / f"ready_{name}").touch()
    while not (folder / "go").exists():
        time.sleep(0.005)
"""


def run_together(body: str, db: Path, folder: Path, names=("w1", "w2")) -> list:
    """Run ``body`` in one process per name (with ``db``, ``name``, ``folder`` and ``wait_for_go()``
    defined); all are released at once when each has called ``wait_for_go()``. Returns their
    (exit status, stderr)."""
    procs = [subprocess.Popen([sys.executable, "-c", TOGETHER + body, str(db), name, str(folder)],
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE, text=True)
             for name in names]
    deadline = time.time() + 60
    while not all((folder / f"ready_{n}").exists() for n in names) and time.time() < deadline:
        time.sleep(0.01)
    (folder / "go").touch()
    return [(p.wait(timeout=60), p.stderr.read()) for p in procs]


WRITER = """
import numpy as np
from speechbrain_ext.access.store import Event, VoiceprintStore
store = VoiceprintStore(db, model_hash="m1")
def linger(sql):  # between the read and the writes of an enrolment: the other writer runs into this one
    if sql.startswith("INSERT OR IGNORE INTO speakers"):
        time.sleep(0.5)
store.connection.set_trace_callback(linger)
wait_for_go()
store.log_event(Event("verify", "alice", "reject", audio_sha256=name))
store.save("alice", np.ones((2, 4)), [name] * 2, replace=False, event=Event("enroll", "alice", "enrolled"))
"""


def test_two_writers_at_once_lose_nothing(store, tmp_path):
    """Fails if BEGIN IMMEDIATE is weakened to BEGIN: a deferred transaction that has read cannot
    wait for the other writer, and SQLite refuses its write ("database is locked")."""
    results = run_together(WRITER, store.path, tmp_path)
    assert [status for status, _ in results] == [0, 0], results
    sources = [r[0] for r in store.connection.execute("SELECT source FROM embeddings WHERE speaker_id = 'alice'")]
    assert sorted(sources) == ["a1.wav", "a2.wav", "w1", "w1", "w2", "w2"]
    assert store.voiceprint("alice").shape == (4,) and len(store.embeddings("alice")) == 6
    assert sorted((e.command, e.audio_sha256 or "") for e in store.events()) == [
        ("enroll", ""), ("enroll", ""), ("verify", "w1"), ("verify", "w2")]
