"""The prompted door: one-time digit prompts, their checks in the claim's transaction, the Verifier and the CLI.

The digit recogniser is replaced by a fake whose answer the test sets (``Heard.digits``), so these tests check
the door's rules, not recognition; the speaker check runs on the tiny untrained model, with thresholds chosen so
that the score passes (or not) wherever the rule under test is another.
"""
import json
import shutil
import sys

import numpy as np
import pytest

from speechbrain_ext.access.audit import ClaimPolicy, record_claim
from speechbrain_ext.digits import digit_errors
from speechbrain_ext.access.cli import EXIT_ACCEPT, EXIT_ERROR, EXIT_REJECT
from speechbrain_ext.access.store import Challenge, Event, VoiceprintStore
from speechbrain_ext.access.verifier import BELOW_THRESHOLD, ClaimError, Verifier
from speechbrain_ext.builder import ModelError
from test_cli import cli
from test_store import run_together

pytestmark = pytest.mark.usefixtures("single_thread")


class Heard:
    """A fake digit recogniser: ``transcribe`` returns ``digits`` whatever the audio, and counts its calls."""

    def __init__(self, digits: str = "") -> None:
        self.digits, self.calls = digits, 0

    def transcribe(self, wav) -> str:
        assert wav.dim() == 1 and wav.numel() > 0  # a checked waveform [T]
        self.calls += 1
        return self.digits


# ------------------------------------------------------------------ the rules, on a bare store
@pytest.fixture
def store(tmp_path):
    """alice and bob enrolled; alice holds challenge n1 (123456, expires at t=100), bob n2; model hash m1."""
    with VoiceprintStore(tmp_path / "vp.db", model_hash="m1", create=True) as s:
        s.save("alice", np.eye(4)[:1], ["a1.wav"])
        s.save("bob", np.eye(4)[1:2], ["b1.wav"])
        for nonce, speaker in (("n1", "alice"), ("n2", "bob")):
            s.add_challenge(Challenge(nonce, speaker, "123456", 100.0), 40.0, Event("challenge", speaker, "issued"))
        yield s


def prompted(store, speaker, nonce, heard="123456", now=50.0, by_score="accept", audio=None, **policy) -> str:
    """Settle a prompted claim that scored ``by_score`` and in which ``heard`` was recognised."""
    event = Event("verify", speaker, by_score, score=0.5, threshold=0.4, audio_sha256=audio, nonce=nonce,
                  recognised=heard)
    return record_claim(store, event, ClaimPolicy(**policy), now)


def test_a_nonce_is_good_once_for_its_speaker_in_time(store):
    assert prompted(store, "bob", "n1") == "unknown_challenge"  # alice's nonce does not serve bob ...
    assert prompted(store, "alice", "no-such-nonce") == "unknown_challenge"
    assert prompted(store, "alice", "n1", now=100.0) == "expired"  # expires_at is the first instant refused
    assert prompted(store, "alice", "n1", now=99.9) == "accept"  # ... nor spends it; neither does expiry
    assert prompted(store, "alice", "n1", now=99.95) == "used_challenge"
    assert prompted(store, "bob", "n2", by_score="reject") == "reject"  # a rejected claim spends its nonce too
    assert prompted(store, "bob", "n2") == "used_challenge"
    assert [(e.speaker_id, e.nonce, e.prompt, e.recognised, e.decision) for e in store.events()[2:]] == [
        ("bob", "n1", None, "123456", "unknown_challenge"),  # another speaker's prompt is not copied into the row
        ("alice", "no-such-nonce", None, "123456", "unknown_challenge"),
        ("alice", "n1", "123456", "123456", "expired"), ("alice", "n1", "123456", "123456", "accept"),
        ("alice", "n1", "123456", "123456", "used_challenge"), ("bob", "n2", "123456", "123456", "reject"),
        ("bob", "n2", "123456", "123456", "used_challenge")]  # (events 1-2 are the challenges)


def test_wrong_digits_and_the_order_of_refusals(store):
    store.add_challenge(Challenge("n3", "alice", "123456", 100.0), 40.0, Event("challenge", "alice", "issued"))
    store.add_challenge(Challenge("n4", "alice", "123456", 100.0), 40.0, Event("challenge", "alice", "issued"))
    assert prompted(store, "alice", "n1", heard="123457") == "wrong_digits"
    assert prompted(store, "alice", "n3", heard="12346", by_score="reject", max_digit_errors=1) == "reject"
    assert prompted(store, "alice", "n4", heard="", audio="h1") == "wrong_digits"  # nothing heard
    assert prompted(store, "alice", "n2", audio="h1") == "unknown_challenge"  # before replay
    limit = dict(max_failures=3, window_minutes=10)  # alice now has 4 failures
    store.add_challenge(Challenge("n5", "alice", "123456", 100.0), 40.0, Event("challenge", "alice", "issued"))
    assert prompted(store, "alice", "n5", **limit) == "locked"
    assert prompted(store, "alice", "n5") == "used_challenge"  # a locked claim spent it as well
    assert [digit_errors("123456", h) for h in ("123456", "123457", "12346", "", "1234567", "654321")] == [
        0, 1, 1, 6, 1, 6]


CLAIMANT = """
from speechbrain_ext.access.audit import ClaimPolicy, record_claim
from speechbrain_ext.access.store import Event, VoiceprintStore
store = VoiceprintStore(db, model_hash="m1")
def linger(sql):  # inside the nonce check: the other door runs into this one
    if sql.startswith("SELECT nonce, speaker_id, digits"):
        time.sleep(0.5)
store.connection.set_trace_callback(linger)
wait_for_go()
event = Event("verify", "alice", "accept", audio_sha256=name, nonce="n1", recognised="123456")
record_claim(store, event, ClaimPolicy(), now=50.0)
"""


def test_one_nonce_at_two_doors_at_once_is_accepted_once(store, tmp_path):
    results = run_together(CLAIMANT, store.path, tmp_path)  # two recordings (w1, w2), one nonce
    assert [status for status, _ in results] == [0, 0], results
    claims = [e for e in store.events("alice") if e.command == "verify"]
    assert sorted(e.decision for e in claims) == ["accept", "used_challenge"]
    assert {e.audio_sha256 for e in claims} == {"w1", "w2"}


# ------------------------------------------------------------------ the Verifier
@pytest.fixture(scope="module")
def door(tiny_model, speaker_corpus, tmp_path_factory):
    """A Verifier with spk0 and spk1 enrolled (utt0-1), a fake recogniser, a clock the test moves, threshold -1
    (every score passes) and no replay check (the corpus files are claimed again)."""
    clock, heard = [1000.0], Heard()
    db = tmp_path_factory.mktemp("challenge") / "vp.db"
    verifier = Verifier(tiny_model, db, threshold=-1.0, policy=ClaimPolicy(replay_check=False), recognizer=heard,
                        clock=lambda: clock[0])
    for spk in ("spk0", "spk1"):
        verifier.enroll(spk, [speaker_corpus / spk / f"utt{u}.wav" for u in (0, 1)])
    verifier.heard, verifier.time = heard, clock
    yield verifier
    verifier.close()


def test_challenge_is_random_stored_and_logged(door):
    issued = [door.challenge("spk0") for _ in range(20)]
    assert all(len(c.digits) == 6 and c.digits.isdigit() and c.expires_at == 1060.0 for c in issued)
    assert len({c.nonce for c in issued}) == 20 and len({c.digits for c in issued}) > 15  # 10^6 prompts
    assert len(issued[0].nonce) >= 22 and door.challenge("spk1", digits=9, ttl=5).expires_at == 1005.0
    assert door.store.challenge(issued[0].nonce) == (issued[0], None)
    last = door.store.events()[-21]
    assert (last.command, last.speaker_id, last.decision, last.prompt, last.nonce) == (
        "challenge", "spk0", "issued", issued[0].digits, issued[0].nonce)
    for bad, message in (({"digits": 0}, "--digits must be 1 to 32, got 0"), ({"ttl": 0}, "--ttl must be > 0"),
                         ({"speaker_id": "nobody"}, "unknown speaker id 'nobody'")):
        with pytest.raises(ClaimError, match=message) as failed:
            door.challenge(**{"speaker_id": "spk0", **bad})
        assert door.store.events()[-1].id == failed.value.event_id and door.store.events()[-1].decision == "error"


def test_prompted_claims_through_the_verifier(door, speaker_corpus):
    probe, calls = speaker_corpus / "spk0" / "utt3.wav", door.heard.calls
    issued = door.challenge("spk0")
    door.heard.digits = issued.digits
    door.time[0] += 59.9
    decision = door.verify("spk0", probe, issued.nonce)
    assert decision.accepted and decision.reason is None and decision.prompt == decision.recognised == issued.digits
    assert door.store.events()[-1].id == decision.event_id and door.store.events()[-1].decision == "accept"
    again = door.verify("spk0", probe, issued.nonce)
    assert (again.accepted, again.reason) == (False, "used_challenge")
    late = door.challenge("spk0")
    door.heard.digits = late.digits
    door.time[0] += 60.0
    assert door.verify("spk0", probe, late.nonce).reason == "expired"
    fresh = door.challenge("spk0")
    door.heard.digits = "".join(str((int(d) + 1) % 10) for d in fresh.digits)  # other digits, same voice
    wrong = door.verify("spk0", probe, fresh.nonce)
    assert (wrong.accepted, wrong.reason, wrong.prompt, wrong.recognised) == (
        False, "wrong_digits", fresh.digits, door.heard.digits)
    other = door.challenge("spk1")
    assert door.verify("spk0", probe, other.nonce).reason == "unknown_challenge"
    assert door.store.challenge(other.nonce)[1] is None  # spk1's prompt is still good
    unprompted = door.verify("spk0", probe)  # works as before, without the recogniser
    assert unprompted.accepted and unprompted.prompt is None and unprompted.recognised is None
    assert door.heard.calls == calls + 5


def test_score_still_decides_a_prompted_claim(door, speaker_corpus):
    lenient = door.calibration
    door.calibration = lenient.with_threshold(2.0)  # no cosine reaches it
    try:
        issued = door.challenge("spk1")
        door.heard.digits = issued.digits
        decision = door.verify("spk1", speaker_corpus / "spk1" / "utt3.wav", issued.nonce)
        assert (decision.accepted, decision.reason, decision.threshold) == (False, BELOW_THRESHOLD, 2.0)
    finally:
        door.calibration = lenient


def test_require_challenge_and_a_model_without_recogniser(tiny_model, speaker_corpus, door):
    probe = speaker_corpus / "spk0" / "utt3.wav"
    with Verifier(tiny_model, door.store.path, policy=ClaimPolicy(require_challenge=True)) as strict:
        with pytest.raises(ClaimError, match="prompted claims only") as failed:
            strict.verify("spk0", probe)
        with pytest.raises(ClaimError, match="prompted claims only"):
            strict.identify(probe)
        with pytest.raises(ClaimError, match="has no digit recogniser \\(digits/\\)") as no_digits:
            strict.challenge("spk0")
        assert isinstance(no_digits.value.__cause__, ModelError)
        issued = door.challenge("spk0")  # a prompt from a door that has a recogniser ...
        with pytest.raises(ClaimError, match="has no digit recogniser"):
            strict.verify("spk0", probe, issued.nonce)  # ... cannot be checked at one without
        assert door.store.challenge(issued.nonce)[1] is None  # and is not spent by the failure
    rows = [e for e in door.store.events() if e.id >= failed.value.event_id]
    assert [(e.command, e.decision) for e in rows] == [("verify", "error"), ("identify", "error"),
                                                       ("challenge", "error"), ("challenge", "issued"),
                                                       ("verify", "error")]


# ------------------------------------------------------------------ the CLI
@pytest.fixture
def prompted_door(tiny_model, speaker_corpus, tmp_path, capsys, monkeypatch):
    """(model with a digits/ folder, database with spk0 and spk1 enrolled, the fake recogniser it loads)."""
    model = shutil.copytree(tiny_model, tmp_path / "model")
    (model / "digits").mkdir()
    heard = Heard()
    monkeypatch.setattr("speechbrain_ext.digits.load_recognizer",
                        lambda folder: heard if (folder / "digits").is_dir() else None)
    db = tmp_path / "door.db"
    for spk in ("spk0", "spk1"):
        assert cli(capsys, "enroll", "--model", model, "--db", db, spk, speaker_corpus / spk / "utt0.wav")[0] == 0
    return model, db, heard


def test_challenge_and_prompted_verify_at_the_cli(prompted_door, speaker_corpus, capsys):
    model, db, heard = prompted_door
    status, out, err = cli(capsys, "challenge", "--model", model, "--db", db, "spk0", "--json")
    issued = json.loads(out)
    assert status == 0 and err == "" and len(issued["digits"]) == 6 and issued["ttl_s"] == 60
    assert issued["speaker_id"] == "spk0" and issued["expires_at"].endswith("Z")
    heard.digits = issued["digits"]
    verify = ["verify", "--model", model, "--db", db, "--threshold", "-1", "spk0"]
    status, out, _ = cli(capsys, *verify, speaker_corpus / "spk0" / "utt1.wav", "--challenge", issued["nonce"],
                         "--json")
    claim = json.loads(out)
    assert status == EXIT_ACCEPT and claim["accepted"] and claim["prompt"] == claim["recognised"] == heard.digits
    status, out, _ = cli(capsys, *verify, speaker_corpus / "spk0" / "utt2.wav", "--challenge", issued["nonce"])
    assert status == EXIT_REJECT and out.startswith("reject spk0: used_challenge (this prompt was answered before)")
    status, out, _ = cli(capsys, "challenge", "--model", model, "--db", db, "spk1", "--digits", "4")
    assert status == 0 and out.startswith("spk1: say ") and len(out.split()[2]) == 4
    prompt, nonce = out.split()[2], out.split("--challenge ")[1].strip()
    heard.digits = str((int(prompt[0]) + 1) % 10) + prompt[1:] + "7"  # a substitution and an insertion
    claim_spk1 = [*verify[:-1], "spk1", speaker_corpus / "spk1" / "utt1.wav", "--challenge", nonce]
    status, out, _ = cli(capsys, *claim_spk1, "--max-digit-errors", "1")
    assert status == EXIT_REJECT and out == (f"reject spk1: wrong_digits (the digits heard are not the prompt); "
                                             f"prompt {prompt}, heard {heard.digits}\n")
    log = json.loads(cli(capsys, "log", "--db", db, "--json")[1])
    assert [(e["command"], e["decision"]) for e in log[2:]] == [
        ("challenge", "issued"), ("verify", "accept"), ("verify", "used_challenge"), ("challenge", "issued"),
        ("verify", "wrong_digits")]
    assert (log[-1]["prompt"], log[-1]["recognised"], log[-1]["nonce"]) == (prompt, heard.digits, nonce)


@pytest.mark.parametrize("case", ["malformed", "another speaker's", "expired"])
def test_bad_nonces_exit_1_with_their_reason_and_are_logged(case, prompted_door, speaker_corpus, capsys):
    model, db, heard = prompted_door
    status, out, _ = cli(capsys, "challenge", "--model", model, "--db", db, "spk1", "--json",
                         "--ttl", "0.05" if case == "expired" else "60")
    issued = json.loads(out)
    heard.digits = issued["digits"]
    claimant = "spk1" if case == "expired" else "spk0"
    nonce = "not a nonce!" if case == "malformed" else issued["nonce"]
    status, out, err = cli(capsys, "verify", "--model", model, "--db", db, "--threshold", "-1", claimant,
                           speaker_corpus / claimant / "utt1.wav", "--challenge", nonce, "--json")
    reason = "expired" if case == "expired" else "unknown_challenge"
    assert status == EXIT_REJECT and err == "" and json.loads(out)["reason"] == reason
    last = json.loads(cli(capsys, "log", "--db", db, "--json")[1])[-1]
    assert (last["speaker_id"], last["nonce"], last["decision"]) == (claimant, nonce, reason)


def test_cli_refusals_exit_2(prompted_door, tiny_model, speaker_corpus, capsys):
    model, db, _ = prompted_door
    probe = speaker_corpus / "spk0" / "utt3.wav"
    status, out, err = cli(capsys, "challenge", "--model", tiny_model, "--db", db, "spk0")  # no digits/
    assert status == EXIT_ERROR and out == "" and err.count("\n") == 1 and "has no digit recogniser" in err
    status, out, err = cli(capsys, "verify", "--model", model, "--db", db, "spk0", probe, "--require-challenge")
    assert status == EXIT_ERROR and out == "" and err.count("\n") == 1 and "prompted claims only" in err
    status, _, err = cli(capsys, "verify", "--model", model, "--db", db, "spk0", probe, "--challenge", "x",
                         "--max-digit-errors", "-1")
    assert status == EXIT_ERROR and "--max-digit-errors must be >= 0, got -1" in err
    log = json.loads(cli(capsys, "log", "--db", db, "--json")[1])[2:]
    assert [(e["command"], e["decision"]) for e in log] == [("challenge", "error"), ("verify", "error"),
                                                           ("verify", "error")]
