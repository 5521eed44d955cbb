"""Audit trail, replay and rate limit: the claim policy on a bare store, then the CLI wiring (tiny model).

Time windows are tested by moving events back in time in the database, which
is the state it would be in that many minutes later.
"""
import hashlib
import json
import os
import re
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_ext.access.cli import EXIT_ACCEPT, EXIT_ERROR, EXIT_REJECT
from speechbrain_ext.access.audit import ClaimPolicy, record_claim
from speechbrain_ext.access.store import Event, VoiceprintStore, utc_iso
from speechbrain_ext.model_folder import model_hash
from test_cli import cli
from test_store import run_together

pytestmark = pytest.mark.usefixtures("single_thread")
LIMIT = ClaimPolicy(max_failures=2, window_minutes=10)


def sha(label: object) -> str:
    return hashlib.sha256(str(label).encode()).hexdigest()


def backdate(db: Path, minutes: float, condition: str, *params) -> None:
    """Move the events matching ``condition`` to ``minutes`` ago."""
    then = utc_iso(datetime.now(timezone.utc) - timedelta(minutes=minutes))
    with sqlite3.connect(db) as connection:
        connection.execute(f"UPDATE events SET time = ? WHERE {condition}", (then, *params))


@pytest.fixture
def store(tmp_path):
    """alice enrolled from the files with hashes sha('a1') and sha('a2'); model hash m1."""
    with VoiceprintStore(tmp_path / "vp.db", model_hash="m1", create=True) as s:
        s.save("alice", np.eye(4)[:2], ["a1.wav", "a2.wav"],
               event=Event("enroll", "alice", "enrolled", audio_sha256=f"{sha('a1')} {sha('a2')}"))
        yield s


def claim(store, speaker, audio, by_score="accept", policy=ClaimPolicy(), command="verify") -> str:
    """Settle a claim that scored ``by_score``; returns the final decision."""
    return record_claim(store, Event(command, speaker, by_score, score=0.5, threshold=0.4, audio_sha256=audio), policy)


def test_replay_of_an_earlier_claim_or_an_enrolment_file(store):
    assert claim(store, "alice", sha(1)) == "accept"
    assert claim(store, "alice", sha(1)) == "replay"
    assert claim(store, "bob", sha(1), "reject", command="identify") == "replay"  # any earlier claim counts
    assert claim(store, "bob", sha("a1"), "reject") == "reject"  # alice's enrolment file, not bob's ...
    assert claim(store, "alice", sha("a2")) == "replay"  # ... alice's
    store.log_event(Event("verify", "alice", "error", error="x.wav: too short", audio_sha256=sha(2)))
    assert claim(store, "alice", sha(2)) == "accept"  # a claim that failed is no earlier claim
    assert claim(store, "alice", sha(1), policy=ClaimPolicy(replay_check=False)) == "accept"
    assert [(e.command, e.decision) for e in store.events()] == [
        ("enroll", "enrolled"), ("verify", "accept"), ("verify", "replay"), ("identify", "replay"),
        ("verify", "reject"), ("verify", "replay"), ("verify", "error"), ("verify", "accept"), ("verify", "accept")]


def test_rate_limit_locks_a_speaker_until_the_window_passes(store):
    assert claim(store, "alice", sha(1), "reject", LIMIT) == "reject"
    assert claim(store, "alice", sha(1), "accept", LIMIT) == "replay"  # the second failure
    assert claim(store, "alice", sha(2), "accept", LIMIT) == "locked"
    assert claim(store, "bob", sha(3), "accept", LIMIT) == "accept"  # other speakers are not affected
    assert claim(store, "alice", sha(4), "accept") == "accept"  # no rate limit unless asked for
    backdate(store.path, 9, "decision IN ('reject', 'replay')")
    assert claim(store, "alice", sha(5), "accept", LIMIT) == "locked"  # still inside the 10 minutes
    backdate(store.path, 11, "decision IN ('reject', 'replay')")  # the locked claims are recent: they do not count
    assert claim(store, "alice", sha(6), "accept", LIMIT) == "accept"


@pytest.mark.parametrize("settings, message", [
    ({"max_failures": 3}, "needs both --max-failures and --window"),
    ({"window_minutes": 5.0}, "needs both --max-failures and --window"),
    ({"max_failures": 0, "window_minutes": 5.0}, r"--max-failures >= 1 and --window > 0 minutes, got 0 and 5"),
    ({"max_failures": 3, "window_minutes": -1.0}, r"got 3 and -1$"),
])
def test_rate_limit_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        ClaimPolicy(**settings)


# ------------------------------------------------------------------ through the CLI
@pytest.fixture
def door(tiny_model, speaker_corpus, tmp_path, capsys):
    """A database made through the CLI: spk0 enrolled from utt0 and utt1, spk1 from utt0."""
    db = tmp_path / "door.db"
    for spk, files in (("spk0", ["utt0.wav", "utt1.wav"]), ("spk1", ["utt0.wav"])):
        argv = ["enroll", "--model", tiny_model, "--db", db, spk, *[speaker_corpus / spk / f for f in files]]
        assert cli(capsys, *argv)[0] == 0
    return db


def logged(capsys, db, *options) -> list:
    """The audit trail as ``log --json`` prints it."""
    status, out, err = cli(capsys, "log", "--db", db, "--json", *options)
    assert status == 0 and err == "", err
    return json.loads(out)


def test_every_command_logs_one_event_failures_included(door, tiny_model, speaker_corpus, tmp_path, capsys):
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all")
    probe, spk2 = speaker_corpus / "spk0" / "utt3.wav", speaker_corpus / "spk2" / "utt0.wav"
    model = ["--model", tiny_model, "--db", door]
    statuses = [cli(capsys, *argv)[0] for argv in (
        ["enroll", *model, "spk2", spk2],
        ["enroll", *model, "spk3", tmp_path / "corrupt.wav"],
        ["verify", *model, "spk0", probe],
        ["verify", *model, "nobody", speaker_corpus / "spk0" / "utt4.wav"],
        ["identify", *model, speaker_corpus / "spk1" / "utt3.wav"],
        ["remove", "--db", door, "spk2"],
        ["remove", "--db", door, "spk2"],
        ["list", "--db", door],
    )]
    assert [s == EXIT_ERROR for s in statuses] == [False, True, False, True, False, False, True, False]
    events = logged(capsys, door)[2:]  # after the fixture's two enrolments
    by_score = ["accept" if statuses[i] == EXIT_ACCEPT else "reject" for i in (2, 4)]
    assert [(e["command"], e["speaker_id"], e["decision"]) for e in events] == [
        ("enroll", "spk2", "enrolled"), ("enroll", "spk3", "error"), ("verify", "spk0", by_score[0]),
        ("verify", "nobody", "error"), ("identify", events[4]["speaker_id"], by_score[1]),
        ("remove", "spk2", "removed"), ("remove", "spk2", "error")]
    assert events[4]["speaker_id"] in {"spk0", "spk1"}  # identify logs its best match
    assert [e["error"] is not None for e in events] == [False, True, False, True, False, False, True]
    assert "corrupt.wav: cannot read audio" in events[1]["error"]
    assert "unknown speaker id 'nobody'" in events[3]["error"] and "unknown speaker id 'spk2'" in events[6]["error"]
    assert events[0]["audio_sha256"] == hashlib.sha256(spk2.read_bytes()).hexdigest()
    assert events[2]["audio_sha256"] == hashlib.sha256(probe.read_bytes()).hexdigest()
    assert [e["threshold"] for e in events] == [None, None, 0.98, None, 0.98, None, None]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["time"]) for e in events)
    assert {e["model_hash"] for e in events} == {model_hash(tiny_model)}
    pcm = sf.read(probe, dtype="int16")[0].tobytes()
    assert pcm[:4000] in probe.read_bytes() and pcm[:4000] not in door.read_bytes()  # no audio stored


def test_replayed_recording_is_rejected_and_logged(door, tiny_model, speaker_corpus, capsys):
    verify = ["verify", "--model", tiny_model, "--db", door, "--threshold", "-1"]  # every score passes
    fresh = speaker_corpus / "spk0" / "utt3.wav"
    assert cli(capsys, *verify, "spk0", fresh)[0] == EXIT_ACCEPT
    status, out, err = cli(capsys, *verify, "spk0", fresh, "--json")
    assert status == EXIT_REJECT and err == "" and json.loads(out)["reason"] == "replay"
    assert not json.loads(out)["accepted"]
    status, out, _ = cli(capsys, *verify, "spk0", speaker_corpus / "spk0" / "utt1.wav")  # enrolled for spk0
    assert status == EXIT_REJECT and out == "reject spk0: replay (this recording was handed in before)\n"
    status, out, _ = cli(capsys, "identify", "--model", tiny_model, "--db", door, "--threshold", "-1", fresh, "--json")
    ranked = json.loads(out)
    assert status == EXIT_REJECT and ranked[0]["reason"] == "replay" and not ranked[0]["accepted"]
    assert cli(capsys, *verify, "--allow-replay", "spk0", fresh)[0] == EXIT_ACCEPT  # the switch for testing
    assert [e["decision"] for e in logged(capsys, door)[2:]] == ["accept", "replay", "replay", "replay", "accept"]


def test_rate_limit_through_the_cli(door, tiny_model, speaker_corpus, capsys):
    claim_spk0 = ["verify", "--model", tiny_model, "--db", door, "--allow-replay", "spk0",
                  speaker_corpus / "spk0" / "utt3.wav"]
    limit = ["--max-failures", "2", "--window", "10"]
    for _ in range(2):
        assert cli(capsys, *claim_spk0, *limit, "--threshold", "2")[0] == EXIT_REJECT  # no score reaches 2
    status, out, _ = cli(capsys, *claim_spk0, *limit, "--threshold", "-1", "--json")
    assert status == EXIT_REJECT and json.loads(out)["reason"] == "locked"
    assert cli(capsys, *claim_spk0, "--threshold", "-1")[0] == EXIT_ACCEPT  # off by default
    backdate(door, 11, "decision = 'reject'")
    assert cli(capsys, *claim_spk0, *limit, "--threshold", "-1")[0] == EXIT_ACCEPT
    assert [e["decision"] for e in logged(capsys, door, "--speaker", "spk0")[1:]] == [
        "reject", "reject", "locked", "accept", "accept"]
    status, out, err = cli(capsys, *claim_spk0, "--max-failures", "2")
    assert status == EXIT_ERROR and out == "" and err.count("\n") == 1
    assert "the rate limit needs both --max-failures and --window" in err


def test_log_text_filters_and_bad_since(door, tiny_model, speaker_corpus, capsys):
    assert cli(capsys, "verify", "--model", tiny_model, "--db", door, "spk1",
               speaker_corpus / "spk1" / "utt3.wav")[0] in (EXIT_ACCEPT, EXIT_REJECT)
    status, out, _ = cli(capsys, "log", "--db", door)
    lines = [line.split("\t") for line in out.splitlines()]
    assert status == 0 and [len(fields) for fields in lines] == [11, 11, 11]
    assert [fields[1:3] for fields in lines] == [["enroll", "spk0"], ["enroll", "spk1"], ["verify", "spk1"]]
    assert lines[2][5] == "0.9800" and lines[2][8:] == ["-", "-", "-"] and len(lines[0][6].split()) == 2  # two files
    assert [e["command"] for e in logged(capsys, door, "--speaker", "spk1")] == ["enroll", "verify"]
    backdate(door, 60 * 24 * 400, "speaker_id = 'spk0'")
    a_year_ago = (datetime.now(timezone.utc) - timedelta(days=365)).isoformat()
    assert [e["speaker_id"] for e in logged(capsys, door, "--since", a_year_ago)] == ["spk1", "spk1"]
    assert logged(capsys, door, "--since", "2999-01-01") == []
    status, out, err = cli(capsys, "log", "--db", door, "--since", "last tuesday")
    assert status == EXIT_ERROR and out == "" and err.count("\n") == 1
    assert "--since 'last tuesday': not an ISO 8601 time" in err


def test_failed_first_enrolment_leaves_no_database(tiny_model, speaker_corpus, tmp_path, capsys):
    (tmp_path / "corrupt.wav").write_bytes(b"not audio at all")
    folder = tmp_path / "dbs"
    folder.mkdir()
    status, _, err = cli(capsys, "enroll", "--model", tiny_model, "--db", folder / "vp.db", "spk0",
                         speaker_corpus / "spk0" / "utt0.wav", tmp_path / "corrupt.wav")
    assert status == EXIT_ERROR and "corrupt.wav: cannot read audio" in err
    assert list(folder.iterdir()) == []  # no database, -wal or -shm


def test_enrolment_with_another_model_leaves_the_database_intact(door, tiny_model, speaker_corpus, tmp_path,
                                                                 capsys):
    other = shutil.copytree(tiny_model, tmp_path / "other_model")
    (other / "embedding_model.ckpt").write_bytes((other / "embedding_model.ckpt").read_bytes() + b"x")

    def enrolled():
        with sqlite3.connect(door) as db:
            return (db.execute("SELECT * FROM speakers ORDER BY speaker_id").fetchall(),
                    db.execute("SELECT * FROM embeddings ORDER BY id").fetchall())

    before = enrolled()
    status, _, err = cli(capsys, "enroll", "--model", other, "--db", door, "spk0",
                         speaker_corpus / "spk0" / "utt2.wav")
    assert status == EXIT_ERROR and "voiceprints were made by model" in err
    assert enrolled() == before
    assert sqlite3.connect(door).execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert [(e["command"], e["decision"]) for e in logged(capsys, door)][-1] == ("enroll", "error")


def test_database_of_another_application_is_left_untouched(tiny_model, speaker_corpus, tmp_path, capsys):
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as db:
        db.execute("PRAGMA application_id = 1234")
        db.execute("CREATE TABLE events (x)")
    before, audio = foreign.read_bytes(), speaker_corpus / "spk0" / "utt0.wav"
    model = ["--model", tiny_model]
    for command, *rest in (["enroll", *model, "spk0", audio], ["verify", *model, "spk0", audio],
                           ["identify", *model, audio], ["remove", "spk0"], ["list"], ["log"]):
        status, out, err = cli(capsys, command, "--db", foreign, *rest)
        assert status == EXIT_ERROR and out == "" and err.count("\n") == 1, (command, err)
        assert "not a speechbrain_ext voiceprint database (SQLite application_id 1234" in err
    assert foreign.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["foreign.db"]


def test_database_is_private_and_a_shared_one_gives_one_warning_line(door, capsys):
    assert os.stat(door).st_mode & 0o777 == 0o600
    os.chmod(door, 0o640)
    status, out, err = cli(capsys, "list", "--db", door)
    assert status == 0 and out.startswith("spk0\t")
    assert err.count("\n") == 1 and err.startswith("speechbrain-ext: warning: ") and "open to other users" in err


CLAIMANT = """
from speechbrain_ext.access.audit import ClaimPolicy, record_claim
from speechbrain_ext.access.store import Event, VoiceprintStore
store = VoiceprintStore(db, model_hash="m1")
def linger(sql):  # inside the replay check: the other claimant runs into this one
    if sql.startswith("SELECT 1 FROM events WHERE audio_sha256"):
        time.sleep(0.5)
store.connection.set_trace_callback(linger)
wait_for_go()
record_claim(store, Event("verify", "alice", "accept", audio_sha256="same recording"), ClaimPolicy())
"""


def test_the_same_recording_at_two_doors_at_once_is_accepted_once(store, tmp_path):
    results = run_together(CLAIMANT, store.path, tmp_path)
    assert [status for status, _ in results] == [0, 0], results
    assert sorted(e.decision for e in store.events("alice")[1:]) == ["accept", "replay"]
