"""Verifier: enrol/verify/identify on the tiny corpus, thresholds, AS-norm cohort, audio checks, concurrency.

The model is the tiny *untrained* ECAPA of ``test_export`` (random weights and
BatchNorm statistics), so nothing guarantees that genuine claims outscore
impostors in general. Two kinds of checks are made:

- exact ones that must hold for any model: an utterance verified against a
  voiceprint enrolled from that utterance alone scores 1 and is ranked first;
  decisions are exactly ``score >= threshold``; AS-norm scores equal
  ``scoring.as_norm``;
- one empirical check, genuine > impostor on average over held-out
  utterances: the corpus voices differ in pitch and spectral tilt, which even
  a random convolutional embedding maps to different directions. It is
  deterministic (seeded data and weights); a change that breaks enrolment or
  scoring (e.g. mixing up voiceprints) makes it fail.
"""
import multiprocessing
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from speechbrain_ext.audio import AudioError
from speechbrain_ext.scoring import as_norm, cosine_scores
from speechbrain_ext.export import write_cohort
from speechbrain_ext.access.audit import ClaimPolicy
from speechbrain_ext.access.verifier import ClaimError, Decision, QualityCheck, Verifier, load_audio
from speechbrain_ext.access.store import VoiceprintError

pytestmark = pytest.mark.usefixtures("single_thread")
SPEAKERS = [f"spk{s}" for s in range(6)]
ENROL, HELD_OUT = range(3), range(3, 6)


def utt(corpus, spk, u):
    return corpus / spk / f"utt{u}.wav"


@pytest.fixture(scope="module")
def enrolled(tiny_model, speaker_corpus, tmp_path_factory):
    """A Verifier with spk0..spk5 enrolled from utt0-2 each; files are claimed again and again, so no replay check."""
    db = tmp_path_factory.mktemp("verifier") / "vp.db"
    verifier = Verifier(tiny_model, db, policy=ClaimPolicy(replay_check=False))
    for spk in SPEAKERS:
        assert verifier.enroll(spk, [utt(speaker_corpus, spk, u) for u in ENROL]) == 3
    yield verifier
    verifier.close()


def test_enrolment_stores_utterances_and_mean(enrolled, speaker_corpus):
    embeddings = enrolled.store.embeddings("spk2")  # [3, D]
    assert embeddings.shape == (3, 16) and np.allclose(np.linalg.norm(embeddings, axis=1), 1, atol=1e-5)
    assert np.allclose(enrolled.store.voiceprint("spk2"), embeddings.mean(axis=0), atol=1e-6)
    direct = enrolled.embed(utt(speaker_corpus, "spk2", 0))
    assert np.allclose(embeddings[0], direct / np.linalg.norm(direct), atol=1e-5)


def test_enrolled_utterance_scores_one_and_ranks_first(enrolled, speaker_corpus):
    probe = utt(speaker_corpus, "spk4", 5)
    assert enrolled.enroll("solo", [probe]) == 1
    try:
        decision = enrolled.verify("solo", probe)
        assert decision.score == pytest.approx(1.0, abs=1e-5) and decision.accepted
        assert enrolled.identify(probe, top_k=1)[0].speaker_id == "solo"
        assert enrolled.verify("spk0", probe).score < 1 - 1e-4
    finally:
        enrolled.store.remove("solo")


def test_genuine_above_impostor_on_average(enrolled, speaker_corpus):
    genuine, impostor = [], []
    for spk in SPEAKERS:
        for u in HELD_OUT:
            ranked = enrolled.identify(utt(speaker_corpus, spk, u), top_k=len(SPEAKERS))
            assert [d.score for d in ranked] == sorted((d.score for d in ranked), reverse=True)
            for d in ranked:
                (genuine if d.speaker_id == spk else impostor).append(d.score)
    assert len(genuine) == 18 and len(impostor) == 90
    assert np.mean(genuine) > np.mean(impostor)


def test_decisions_follow_threshold(enrolled, tiny_model, speaker_corpus):
    assert enrolled.calibration.threshold == 0.98 and enrolled.calibration.mode == "far" and enrolled.score_kind == "cosine"  # threshold.json
    probe = utt(speaker_corpus, "spk1", 4)
    decision = enrolled.verify("spk1", probe)
    assert isinstance(decision, Decision) and decision.accepted == (decision.score >= 0.98)
    for ranked in enrolled.identify(probe, top_k=6):
        assert ranked.accepted == (ranked.score >= 0.98)
    with Verifier(tiny_model, enrolled.store.path, threshold=decision.score) as at_score:
        assert at_score.score("spk1", probe).accepted  # score == threshold: accept
    above = float(np.nextafter(decision.score, 2.0))
    with Verifier(tiny_model, enrolled.store.path, threshold=above) as strict:
        assert not strict.score("spk1", probe).accepted


def test_as_norm_with_cohort(enrolled, tiny_model, speaker_corpus, tmp_path):
    moved = shutil.copytree(tiny_model, tmp_path / "model_with_cohort")  # same model, moved: same hash
    cohort = torch.randn(8, 16, generator=torch.Generator().manual_seed(0))
    write_cohort(moved, cohort, threshold=1.5, top_n=4)
    probe = utt(speaker_corpus, "spk3", 3)
    with Verifier(moved, enrolled.store.path) as normed:
        assert normed.score_kind == "asnorm" and normed.calibration.threshold == 1.5
        decision = normed.score("spk3", probe)
        test_emb = normed.embed(probe)
    trial = [("spk3", "t")]
    enroll, test = {"spk3": enrolled.store.voiceprint("spk3")}, {"t": test_emb}
    expected = as_norm(cosine_scores(trial, enroll, test), trial, enroll, test, cohort, top_n=4)[0]
    assert decision.score == pytest.approx(expected, abs=1e-6) and decision.accepted == (expected >= 1.5)


def test_other_model_refused(enrolled, tiny_model, tmp_path):
    other = shutil.copytree(tiny_model, tmp_path / "other_model")
    state = torch.load(other / "embedding_model.ckpt")
    first = next(iter(state))
    state[first] = state[first] + 0.01
    torch.save(state, other / "embedding_model.ckpt")
    with pytest.raises(VoiceprintError, match="voiceprints were made by model .* not by model .*other_model"):
        Verifier(other, enrolled.store.path)


def test_bad_claims(enrolled, tiny_model, speaker_corpus, tmp_path):
    probe = utt(speaker_corpus, "spk0", 3)
    with pytest.raises(ClaimError, match="unknown speaker id 'nobody'") as failed:
        enrolled.verify("nobody", probe)
    assert isinstance(failed.value.__cause__, VoiceprintError)
    logged = enrolled.store.events()[-1]  # a claim that could not be decided is logged, with its event id
    assert (logged.id, logged.command, logged.speaker_id, logged.decision) == (
        failed.value.event_id, "verify", "nobody", "error") and "unknown speaker id 'nobody'" in logged.error
    with pytest.raises(VoiceprintError, match="no such voiceprint database"):
        Verifier(tiny_model, tmp_path / "absent.db", create=False)
    with Verifier(tiny_model, tmp_path / "empty.db") as empty:
        with pytest.raises(ClaimError, match="no speakers are enrolled"):
            empty.verify("spk0", probe)
        with pytest.raises(ClaimError, match="no speakers are enrolled"):
            empty.identify(probe)
    assert not (tmp_path / "empty.db").exists()  # a failed claim creates no database
    with pytest.raises(FileNotFoundError, match="no such folder"):
        Verifier(tmp_path / "no_model", tmp_path / "x.db")


@pytest.fixture(scope="module")
def bad_audio(tmp_path_factory):
    """name -> (file, expected message fragment)."""
    d = tmp_path_factory.mktemp("bad_audio")
    rng = np.random.default_rng(0)
    voice = (0.1 * rng.standard_normal(16000)).astype("float32")
    square = np.sign(np.sin(np.arange(16000) / 5)).astype("float32")
    sf.write(d / "short.wav", voice[:6400], 16000)
    sf.write(d / "silent.wav", np.zeros(16000, "float32"), 16000)
    sf.write(d / "clipped.wav", square, 16000)
    sf.write(d / "8k.wav", voice[:8000], 8000)
    (d / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunk")
    return {"short": (d / "short.wav", r"too short \(0.40 s, minimum 0.5 s\)"),
            "silent": (d / "silent.wav", "silent"),
            "clipped": (d / "clipped.wav", r"clipped \(100.0% of samples at full scale"),
            "rate": (d / "8k.wav", "sample rate 8000 Hz, expected 16000 Hz"),
            "corrupt": (d / "corrupt.wav", "cannot read audio"),
            "missing": (d / "missing.wav", "no such file")}


@pytest.mark.parametrize("kind", ["short", "silent", "clipped", "rate", "corrupt", "missing"])
def test_enrolment_quality_errors_name_the_file(enrolled, speaker_corpus, bad_audio, kind):
    path, message = bad_audio[kind]
    good = utt(speaker_corpus, "spk5", 0)
    with pytest.raises(AudioError, match=f"^{path}: {message}") as err:
        enrolled.enroll("newcomer", [good, path])
    assert "\n" not in str(err.value)
    assert "newcomer" not in [s.speaker_id for s in enrolled.store.speakers()]  # nothing half-enrolled


def test_tensor_input_stereo_downmix_and_short_claim(enrolled, speaker_corpus, tmp_path, bad_audio):
    mono, rate = sf.read(utt(speaker_corpus, "spk1", 3), dtype="float32")
    sf.write(tmp_path / "stereo.wav", np.stack([mono, mono], axis=1), rate, subtype="PCM_16")
    from_file = enrolled.embed(utt(speaker_corpus, "spk1", 3))
    assert np.allclose(enrolled.embed(tmp_path / "stereo.wav"), from_file, atol=1e-5)
    assert np.allclose(enrolled.embed(torch.from_numpy(mono)), from_file, atol=1e-5)
    with pytest.raises(ClaimError, match="audio: too short") as failed:
        enrolled.verify("spk1", torch.from_numpy(mono[:4000]))
    assert isinstance(failed.value.__cause__, AudioError)
    with pytest.raises(ClaimError, match="too short"):
        enrolled.verify("spk1", bad_audio["short"][0])
    assert QualityCheck(min_duration=0.3).problem(torch.from_numpy(mono[:6400])) is None
    with pytest.raises(AudioError, match=r"shape \[T\] or \[1, T\]"):
        load_audio(torch.zeros(2, 16000), "audio", QualityCheck())


def _verify_loop(model, db, probe, barrier, enrolled_all, queue):
    """Child: verify spk0 and identify until the enrolling child is done; report the scores or the error."""
    torch.set_num_threads(1)  # as DataLoader workers do after fork
    try:
        with Verifier(model, db, create=False) as verifier:
            barrier.wait(timeout=30)
            scores = []
            while not enrolled_all.is_set() or len(scores) < 3:
                scores.append(verifier.verify("spk0", probe).score)
                verifier.identify(probe, top_k=3)
        queue.put(("ok", scores))
    except Exception as err:  # noqa: BLE001 -- reported to the parent
        queue.put(("error", f"{type(err).__name__}: {err}"))


def _enrol_loop(model, db, files, barrier, enrolled_all, queue):
    """Child: once the verifiers run, re-enrol spk1 (replace, then append) and add extra0..extra3."""
    torch.set_num_threads(1)
    try:
        with Verifier(model, db, create=False) as verifier:
            barrier.wait(timeout=30)
            for r in range(4):
                verifier.enroll("spk1", files, replace=r % 2 == 0)
                verifier.enroll(f"extra{r}", files[:1])
        queue.put(("ok", []))
    except Exception as err:  # noqa: BLE001
        queue.put(("error", f"{type(err).__name__}: {err}"))
    finally:
        enrolled_all.set()


def test_concurrent_verification_while_enrolling(enrolled, tiny_model, speaker_corpus):
    ctx = multiprocessing.get_context("fork")  # children reuse the imported torch/speechbrain
    queue, barrier, enrolled_all = ctx.Queue(), ctx.Barrier(4), ctx.Event()
    db, probe = enrolled.store.path, utt(speaker_corpus, "spk0", 4)
    files = [utt(speaker_corpus, "spk1", u) for u in ENROL]
    shared = (barrier, enrolled_all, queue)
    procs = [ctx.Process(target=_verify_loop, args=(tiny_model, db, probe, *shared)) for _ in range(3)]
    procs.append(ctx.Process(target=_enrol_loop, args=(tiny_model, db, files, *shared)))
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=60) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    assert all(status == "ok" for status, _ in results), results
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    expected = enrolled.verify("spk0", probe).score
    for _, scores in results:
        assert all(s == pytest.approx(expected, abs=1e-5) for s in scores)
    assert enrolled.store.connection.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert {f"extra{r}" for r in range(4)} <= {s.speaker_id for s in enrolled.store.speakers()}
    assert len(enrolled.store.embeddings("spk1")) == 6  # last round (r=3) appended to r=2's 3
    for r in range(4):
        enrolled.store.remove(f"extra{r}")
