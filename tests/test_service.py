"""The HTTP service in process (FastAPI's TestClient): routes, tokens, audio as clients send it, bad input, and the
same decisions and audit rows as the CLI on the same files.

The model is the tiny untrained one of ``conftest.tiny_model`` (threshold 0.98): the checks are exact relations
(a claim scores what the CLI scores on the same bytes; a resampled copy scores what the 16 kHz original scores)
rather than claims about accuracy.
"""
import functools
import io
import json
import os
import stat

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from speechbrain_ext.access.cli import main
from speechbrain_ext.access.service import Door, ServiceConfig, create_app, ensure_tokens, token_path
from speechbrain_ext.access.verifier import Verifier
from speechbrain_ext.access.store import VoiceprintStore

pytestmark = pytest.mark.usefixtures("single_thread")
TestClient = pytest.importorskip("fastapi.testclient").TestClient


def utt(corpus, spk, u):
    return corpus / spk / f"utt{u}.wav"


def upload(path, name=None):
    return (name or path.name, open(path, "rb").read(), "audio/wav")


def wav_bytes(samples, rate, fmt="WAV"):
    buffer = io.BytesIO()
    sf.write(buffer, samples, rate, format=fmt, subtype="PCM_16")
    return buffer.getvalue()


class Service:
    """A TestClient over a fresh app, with its two tokens."""

    def __init__(self, config, door=None):
        self.config = config
        self.client = TestClient(create_app(config, door), raise_server_exceptions=False)
        self.tokens = ensure_tokens(config.db)

    def post(self, path, role="door", **kwargs):
        token = {"door": self.tokens.door, "admin": self.tokens.admin}.get(role, role)
        return self.client.post(path, headers={"Authorization": f"Bearer {token}"} if token else {}, **kwargs)

    def admin_get(self, path, **kwargs):
        return self.client.get(path, headers={"Authorization": f"Bearer {self.tokens.admin}"}, **kwargs)

    def verify(self, speaker, audio, **fields):
        return self.post("/v1/verify", data={"speaker": speaker, **fields}, files={"audio": audio})

    def events(self):
        response = self.admin_get("/v1/log")
        assert response.status_code == 200
        return response.json()


@pytest.fixture(scope="module")
def service(tiny_model, speaker_corpus, tmp_path_factory):
    """spk0 and spk1 enrolled through the API from utt0-2 each."""
    svc = Service(ServiceConfig(str(tiny_model), str(tmp_path_factory.mktemp("service") / "vp.db")))
    for spk in ("spk0", "spk1"):
        response = svc.post("/v1/enroll", "admin", data={"speaker": spk},
                            files=[("audio", upload(utt(speaker_corpus, spk, u))) for u in range(3)])
        assert response.status_code == 200 and response.json()["num_utterances"] == 3
    return svc


def test_tokens_are_private_and_required(service):
    for role in ("door", "admin"):
        path = token_path(service.config.db, role)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600 and len(path.read_text().strip()) >= 32
    assert service.tokens.door != service.tokens.admin
    assert ensure_tokens(service.config.db) == service.tokens  # kept across restarts
    before = len(service.events())
    refusals = [service.post("/v1/verify", None, data={"speaker": "spk0"}),
                service.post("/v1/verify", "not-a-token", data={"speaker": "spk0"}),
                service.post("/v1/enroll", "door", data={"speaker": "spk0"}),
                service.client.get("/v1/log", headers={"Authorization": f"Bearer {service.tokens.door}"})]
    assert [r.status_code for r in refusals] == [401] * 4
    assert [r.json()["error"].split(" (")[0] for r in refusals] == [
        "unauthorized: no bearer token", "unauthorized: wrong token",
        "unauthorized: this route needs the admin token", "unauthorized: this route needs the admin token"]
    assert all(r.headers["www-authenticate"] == "Bearer" for r in refusals)
    logged = service.events()[before:]
    assert [(e["command"], e["decision"]) for e in logged] == [
        ("verify", "error"), ("verify", "error"), ("enroll", "error"), ("log", "error")]
    assert [e["id"] for e in logged] == [r.json()["event_id"] for r in refusals]
    assert all(service.tokens.door not in e["error"] for e in logged)  # the tokens never reach the log


def test_same_decisions_and_audit_rows_as_the_cli(service, tiny_model, speaker_corpus, tmp_path, capsys):
    """spk0 enrolled through the CLI in one database and through the API in another: every claim of the same
    files gets the same answer and the same event row (time and row id aside)."""
    cli_db = tmp_path / "cli.db"
    files = [utt(speaker_corpus, "spk0", u) for u in range(3)]
    assert main(["enroll", "--model", str(tiny_model), "--db", str(cli_db), "spk0", *map(str, files)]) == 0
    assert np.allclose(VoiceprintStore(cli_db).embeddings("spk0"),
                       VoiceprintStore(service.config.db).embeddings("spk0"), atol=1e-6)
    claims = [("spk0", utt(speaker_corpus, "spk0", 3)), ("spk0", utt(speaker_corpus, "spk3", 3)),
              ("spk0", utt(speaker_corpus, "spk0", 3)),  # a replay
              ("spk0", utt(speaker_corpus, "spk0", 1))]  # an enrolment file: a replay
    capsys.readouterr()
    for speaker, path in claims:
        status = main(["verify", "--model", str(tiny_model), "--db", str(cli_db), speaker, str(path), "--json"])
        by_cli = json.loads(capsys.readouterr().out)
        response = service.verify(speaker, upload(path))
        assert response.status_code == 200
        by_service = response.json()
        assert by_service["score"] == pytest.approx(by_cli["score"], abs=1e-6)
        for key in ("speaker_id", "accepted", "threshold", "llr", "score_kind", "reason", "decision"):
            assert by_service[key] == by_cli[key], key
        assert (by_service["decision"] == "accept") == (status == 0)
    assert [r["decision"] for r in service.events()[-4:]][2:] == ["replay", "replay"]
    keys = ("command", "speaker_id", "decision", "threshold", "error", "audio_sha256", "model_hash")
    cli_rows = [e for e in VoiceprintStore(cli_db).events() if e.command == "verify"]
    service_rows = service.events()[-4:]
    assert [tuple(getattr(e, k) for k in keys) for e in cli_rows] == [tuple(e[k] for k in keys) for e in service_rows]
    assert [e.score for e in cli_rows] == pytest.approx([e["score"] for e in service_rows], abs=1e-6)


def test_browser_rates_and_channels_are_resampled(service, speaker_corpus):
    """44.1 kHz stereo WAV and 48 kHz FLAC copies of a 16 kHz utterance embed as the original does (much closer
    than another utterance of the speaker) and are claimed like it; 8 kHz is refused."""
    from speechbrain_ext.access.verifier import load_audio

    door = service.client.app.state.door
    verifier = door.verifier
    original, _ = sf.read(utt(speaker_corpus, "spk1", 4), dtype="float32")
    unit = lambda wav: (lambda e: e / np.linalg.norm(e))(verifier.embed(wav))
    reference = unit(torch.from_numpy(original))
    neighbour = 1 - reference @ unit(torch.from_numpy(sf.read(utt(speaker_corpus, "spk1", 5), dtype="float32")[0]))
    for rate, channels, fmt in ((44100, 2, "WAV"), (48000, 1, "FLAC")):
        up = torchaudio.functional.resample(torch.from_numpy(original), 16000, rate).numpy()
        data = wav_bytes(np.stack([up] * channels, axis=1) if channels > 1 else up, rate, fmt)
        wav = load_audio(io.BytesIO(data), "upload", verifier.quality, resample=True)
        assert 1 - reference @ unit(wav) < 0.05 * neighbour, rate
        response = service.verify("spk1", (f"c{rate}.{fmt.lower()}", data))
        assert response.status_code == 200, response.json()
        assert response.json()["score"] == pytest.approx(
            door.executor.submit(verifier.score, "spk1", wav).result().score, abs=1e-6)  # its SQLite thread
    low = service.verify("spk1", ("phone.wav", wav_bytes(original[::2].copy(), 8000)))
    assert low.status_code == 422
    assert low.json()["error"] == "phone.wav: sample rate 8000 Hz, expected 16000 Hz or more"


@pytest.fixture(scope="module")
def bad_audio(tmp_path_factory):
    rng = np.random.default_rng(0)
    noise = lambda seconds, rate=16000: (0.1 * rng.standard_normal(int(seconds * rate))).astype("float32")
    return {"silent.wav": wav_bytes(np.zeros(16000, dtype="float32"), 16000),
            "short.wav": wav_bytes(noise(0.3), 16000),
            "corrupt.wav": b"RIFF this is not audio at all",
            "long.wav": wav_bytes(noise(31), 16000),
            "huge.wav": b"RIFF" + bytes(11 * 2 ** 20)}


BAD = {  # case: (route, form fields, files, status, error pattern)
    "unknown speaker": ("/v1/verify", {"speaker": "nobody"}, "ok", 404, "unknown speaker id 'nobody'"),
    "missing speaker": ("/v1/verify", {}, "ok", 422, "missing field 'speaker'"),
    "missing audio": ("/v1/verify", {"speaker": "spk0"}, "note", 422, "missing field 'audio'"),
    "silent audio": ("/v1/verify", {"speaker": "spk0"}, "silent.wav", 422,
                     r"silent.wav: silent \(RMS -inf dBFS, below -60 dBFS\)"),
    "short audio": ("/v1/verify", {"speaker": "spk0"}, "short.wav", 422,
                    r"short.wav: too short \(0.30 s, minimum 0.5 s\)"),
    "undecodable audio": ("/v1/verify", {"speaker": "spk0"}, "corrupt.wav", 422, "corrupt.wav: cannot read audio"),
    "over 30 s": ("/v1/verify", {"speaker": "spk0"}, "long.wav", 413, r"long.wav: 31.0 s of audio, limit 30 s"),
    "over 10 MB": ("/v1/identify", {}, "huge.wav", 413, "request body of .* bytes, limit 10 MB per audio file"),
    "bad top_k": ("/v1/identify", {"top_k": "0"}, "ok", 422, "invalid field 'top_k'"),
    "bad enrolment file": ("/v1/enroll", {"speaker": "spk5"}, "silent.wav", 422, "silent.wav: silent"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_one_line_json_logged(case, service, speaker_corpus, bad_audio):
    route, fields, name, status, pattern = BAD[case]
    role = "admin" if route == "/v1/enroll" else "door"
    files = ({"note": ("note.txt", b"a multipart body without audio")} if name == "note" else
             {"audio": upload(utt(speaker_corpus, "spk0", 5)) if name == "ok" else (name, bad_audio[name])})
    before = len(service.events())
    response = service.post(route, role, data=fields, files=files)
    body = response.json()
    assert response.status_code == status and set(body) == {"error", "event_id"}
    assert "\n" not in body["error"] and "Traceback" not in response.text
    assert __import__("re").fullmatch(f".*{pattern}.*", body["error"]), body["error"]
    logged = service.events()[before:]
    assert len(logged) == 1 and logged[0]["decision"] == "error" and logged[0]["id"] == body["event_id"]
    assert logged[0]["error"] == body["error"] and logged[0]["command"] == route.rsplit("/", 1)[1]
    if "speaker" in fields and status != 413:
        assert logged[0]["speaker_id"] == fields["speaker"]


def test_a_body_that_is_not_multipart_gives_415(service):
    for kwargs in ({"json": {"speaker": "spk0", "audio": "x"}}, {"content": b"raw audio bytes"}):
        response = service.post("/v1/verify", data=None, **kwargs)
        assert response.status_code == 415 and "takes multipart/form-data" in response.json()["error"]


def test_identify_speakers_remove_and_log(service, speaker_corpus):
    listed = service.admin_get("/v1/speakers").json()
    assert [(s["speaker_id"], s["num_utterances"]) for s in listed] == [("spk0", 3), ("spk1", 3)]
    enrolled = service.post("/v1/enroll", "admin", data={"speaker": "tmp"},
                            files=[("audio", upload(utt(speaker_corpus, "spk4", 0)))]).json()
    response = service.post("/v1/identify", files={"audio": upload(utt(speaker_corpus, "spk4", 0))},
                            data={"top_k": "2"})
    body = response.json()  # its only enrolment file: scores 1, ranks first, and is a replay
    assert response.status_code == 200 and body["speaker_id"] == "tmp" and body["decision"] == "replay"
    assert body["score"] == pytest.approx(1, abs=1e-5) and body["reason"] == "replay" and not body["accepted"]
    assert [c["speaker_id"] for c in body["candidates"]][0] == "tmp" and len(body["candidates"]) == 2
    appended = service.post("/v1/enroll", "admin", data={"speaker": "tmp", "append": "true"},
                            files=[("audio", upload(utt(speaker_corpus, "spk4", 1)))]).json()
    assert (enrolled["num_utterances"], appended["num_utterances"]) == (1, 2)
    assert VoiceprintStore(service.config.db).connection.execute(
        "SELECT source FROM embeddings WHERE speaker_id = 'tmp' ORDER BY id").fetchall() == [("utt0.wav",), ("utt1.wav",)]
    removed = service.client.delete("/v1/speakers/tmp", headers={"Authorization": f"Bearer {service.tokens.admin}"})
    assert removed.status_code == 200 and removed.json()["removed"] == "tmp"
    again = service.client.delete("/v1/speakers/tmp", headers={"Authorization": f"Bearer {service.tokens.admin}"})
    assert again.status_code == 404 and "unknown speaker id 'tmp'" in again.json()["error"]
    log = service.admin_get("/v1/log", params={"speaker": "tmp"}).json()
    assert [(e["command"], e["decision"]) for e in log] == [("enroll", "enrolled"), ("identify", "replay"),
                                                            ("enroll", "enrolled"), ("remove", "removed"),
                                                            ("remove", "error")]
    assert log[3]["id"] == removed.json()["event_id"]
    assert service.admin_get("/v1/log", params={"since": "2999-01-01"}).json() == []
    bad_since = service.admin_get("/v1/log", params={"since": "yesterday"})
    assert bad_since.status_code == 400 and "not an ISO 8601 time" in bad_since.json()["error"]


def test_health_docs_and_pages(service, tiny_model):
    health = service.client.get("/health").json()
    store = VoiceprintStore(service.config.db)
    assert health["model_hash"] == store.meta["model_hash"] and health["threshold"] == 0.98
    assert health["model"] == tiny_model.name and health["score_kind"] == "cosine" and health["challenges"] is False
    paths = service.client.get("/openapi.json").json()["paths"]
    assert set(paths) == {"/v1/verify", "/v1/identify", "/v1/challenge", "/v1/enroll", "/v1/speakers",
                          "/v1/speakers/{speaker_id}", "/v1/log", "/health"}
    assert set(paths["/v1/speakers/{speaker_id}"]) == {"delete"} and service.client.get("/docs").status_code == 200
    for page in ("/", "/admin", "/static/kiosk.js", "/static/style.css"):
        text = service.client.get(page).text
        assert "getUserMedia" in text or "recordWav" in text or "button" in text, page
        assert "http://" not in text and "https://" not in text.replace("https://bit.ly", ""), page  # no CDN
    assert '<meta name="door-token" content="">' in service.client.get("/").text  # not given away by default


def test_kiosk_token_in_page_only_when_asked(tiny_model, tmp_path):
    svc = Service(ServiceConfig(str(tiny_model), str(tmp_path / "vp.db"), kiosk_token_in_page=True))
    assert f'<meta name="door-token" content="{svc.tokens.door}">' in svc.client.get("/").text
    assert svc.tokens.admin not in svc.client.get("/").text + svc.client.get("/admin").text


class Heard:
    """A fake digit recogniser (as in test_challenge): hears ``digits`` in any audio."""

    def __init__(self, digits: str = "") -> None:
        self.digits = digits

    def transcribe(self, wav) -> str:
        return self.digits


def test_challenge_route(service, tiny_model, speaker_corpus, tmp_path):
    absent = service.post("/v1/challenge", data={"speaker": "spk0"})  # the tiny model has no digits/
    assert absent.status_code == 409 and "has no digit recogniser" in absent.json()["error"]
    assert service.events()[-1]["id"] == absent.json()["event_id"]  # logged once, by the Verifier
    heard = Heard()
    config = ServiceConfig(str(tiny_model), str(tmp_path / "vp.db"), threshold=-1.0)
    svc = Service(config, Door(config, functools.partial(Verifier, recognizer=heard)))
    assert svc.client.get("/health").json()["challenges"] is True
    svc.post("/v1/enroll", "admin", data={"speaker": "spk2"}, files=[("audio", upload(utt(speaker_corpus, "spk2", 0)))])
    issued = svc.post("/v1/challenge", data={"speaker": "spk2", "digits": "4"})
    prompt = issued.json()
    assert issued.status_code == 200 and set(prompt) == {"speaker_id", "nonce", "digits", "expires_at"}
    assert prompt["speaker_id"] == "spk2" and len(prompt["digits"]) == 4 and prompt["digits"].isdigit()
    heard.digits = prompt["digits"]
    good = svc.verify("spk2", upload(utt(speaker_corpus, "spk2", 1)), nonce=prompt["nonce"]).json()
    bad = svc.verify("spk2", upload(utt(speaker_corpus, "spk2", 2)), nonce="forged").json()
    assert (good["decision"], good["reason"], good["prompt"], good["recognised"]) == (
        "accept", None, prompt["digits"], prompt["digits"])
    assert (bad["decision"], bad["accepted"], bad["reason"]) == ("unknown_challenge", False, "unknown_challenge")
    assert svc.events()[-1]["decision"] == "unknown_challenge" and svc.events()[-1]["id"] == bad["event_id"]
    ghost = svc.post("/v1/challenge", data={"speaker": "ghost"})
    assert ghost.status_code == 404 and svc.events()[-1]["id"] == ghost.json()["event_id"]
    assert svc.post("/v1/challenge", data={"speaker": "spk2", "digits": "33"}).status_code == 400


class BrokenVerifier(Verifier):
    def verify(self, speaker_id, audio, nonce=None):
        raise RuntimeError("weights on fire\nsecond line")


def test_internal_error_is_500_with_event_id_and_the_traceback_stays_in_the_log(tiny_model, speaker_corpus,
                                                                                 tmp_path, caplog):
    config = ServiceConfig(str(tiny_model), str(tmp_path / "vp.db"))
    svc = Service(config, Door(config, BrokenVerifier))
    svc.post("/v1/enroll", "admin", data={"speaker": "spk0"}, files=[("audio", upload(utt(speaker_corpus, "spk0", 0)))])
    with caplog.at_level("ERROR", logger="speechbrain_ext.access.service"):
        response = svc.verify("spk0", upload(utt(speaker_corpus, "spk0", 1)))
    body = response.json()
    assert response.status_code == 500 and "weights on fire" not in response.text and "Traceback" not in response.text
    assert body["error"] == f"internal error, see the server log (event {body['event_id']})"
    assert svc.events()[-1]["error"] == "RuntimeError: weights on fire" and svc.events()[-1]["id"] == body["event_id"]
    record = [r for r in caplog.records if f"event {body['event_id']}" in r.getMessage()][0]
    assert record.exc_info is not None and "weights on fire" in str(record.exc_info[1])


def test_serve_start_errors_one_line_exit_2(tiny_model, tmp_path, capsys):
    import socket

    (tmp_path / "not_ours.db").write_bytes(b"SQLite format 3\x00" + os.urandom(2000))
    cases = {"not ours": (["--db", str(tmp_path / "not_ours.db")], "not a speechbrain_ext voiceprint database"),
             "no model": (["--model", str(tmp_path / "nowhere")], "nowhere: no such folder")}
    for case, (options, message) in cases.items():
        argv = ["serve", "--model", str(tiny_model), "--db", str(tmp_path / "vp.db"), "--port", "0", *options]
        assert main(argv) == 2, case
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not token_path(str(tmp_path / "not_ours.db"), "door").exists()  # nothing written next to it
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(tiny_model), "--db", str(tmp_path / "vp.db"), "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err == f"speechbrain-ext: error: cannot listen on 127.0.0.1:{port} (Address already in use); " \
                  "is another serve running?\n"
