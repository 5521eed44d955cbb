"""Access-control front end: enrol speakers, issue prompts, verify claims, identify voices.

A :class:`Verifier` joins an exported model folder (loaded offline through SpeechBrain's ``SpeakerRecognition``,
see :func:`speechbrain_ext.inference.load_verifier`), a :class:`~speechbrain_ext.access.store.VoiceprintStore` and
a :class:`~speechbrain_ext.access.audit.ClaimPolicy`. Its claims (:meth:`Verifier.verify`,
:meth:`Verifier.identify`) are the one claim path of the door: scored, settled by
:func:`~speechbrain_ext.access.audit.record_claim` and logged, so that every front end (CLI, HTTP service) makes
the same decisions and audit rows.

Prompted claims: :meth:`Verifier.challenge` stores a one-time prompt (random digits from ``secrets``, a nonce, an
expiry) and the claim hands the nonce back with a recording of the prompt; the model folder's digit recogniser
(``<model>/digits/``, :mod:`speechbrain_ext.digits`) transcribes it, and the claim passes only if the digits match
as well as the voice (see :mod:`speechbrain_ext.access.audit` for the order of the checks).

Scoring, for a voiceprint ``v`` [D] (mean of normalised enrolment embeddings) and a test embedding ``t`` [D]::

    s = <v/|v|, t/|t|>                                   plain cosine
    s' = 0.5 * [(s - mu_v)/sigma_v + (s - mu_t)/sigma_t]  AS-norm (scoring.as_norm)

The score is the one the model's threshold was calibrated on: the :class:`~speechbrain_ext.scoring.Scoring`
named by the folder's ``threshold.json`` (AS-norm with its ``cohort.pt``, see
:func:`speechbrain_ext.calibration.load_scoring`); voiceprints are ``scoring.voiceprints``, as in evaluation. The
score's verdict is ``calibration.Calibration.accept`` of the score and the claim's duration, as in evaluation: llr
mode ``llr >= log(c_fa (1 - P_t) / (c_miss P_t))``, far mode ``score >= threshold``. A threshold given makes it far
mode at that threshold; without ``threshold.json``, SpeechBrain's 0.25 with a warning.

Audio (:func:`load_audio`), enrolment and test alike, must be readable, at 16 kHz (no resampling: a wrong rate is an
error naming the rate found; the HTTP service, which takes what browsers record, resamples higher rates with
``resample=True``) and pass :class:`QualityCheck` (long enough, not silent, not clipped). Multi-channel files
are down-mixed to mono by averaging the channels (door units often record the same signal twice).
"""
import contextlib
import hashlib
import math
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator, List, NamedTuple, Optional, Protocol, Sequence, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechbrain_ext.access.audit import ClaimPolicy, record_claim
from speechbrain_ext.access.store import Challenge, Event, VoiceprintError, VoiceprintStore, audio_sha256
from speechbrain_ext.audio import AudioError
from speechbrain_ext.builder import ModelError
from speechbrain_ext.inference import load_verifier
from speechbrain_ext.io_utils import PathLike
from speechbrain_ext.manifest import SAMPLE_RATE
from speechbrain_ext.model_folder import model_hash

Audio = Union[PathLike, BinaryIO, torch.Tensor, np.ndarray]  # BinaryIO: an open file, e.g. an upload (its .name)
BELOW_THRESHOLD = "below_threshold"  # the reason of a claim rejected by its score
MAX_PROMPT_DIGITS = 32
NONCE_BYTES = 16  # secrets.token_urlsafe(16): 128 random bits, 22 characters


class Decision(NamedTuple):
    """Outcome of one claim.

    ``accepted`` is the calibrated verdict on the score (``Calibration.accept``), i.e. ``score >= threshold``,
    ``threshold`` being the score the decision amounts to at this claim's duration
    (``Calibration.score_threshold``), for a bare score (:meth:`Verifier.score`); for a settled claim it is False as
    well when a refusal applies. ``reason`` is None when accepted, else :data:`BELOW_THRESHOLD` or the
    refusal (:data:`speechbrain_ext.access.audit.REFUSALS`); ``event_id`` is the claim's audit row (None for a bare
    score and for the runners-up of ``identify``); ``prompt`` and ``recognised`` are the digits of a prompted claim;
    ``llr`` is the calibrated log-likelihood ratio in llr mode, else None.
    """

    score: float
    accepted: bool
    threshold: float
    speaker_id: str
    reason: Optional[str] = None
    event_id: Optional[int] = None
    prompt: Optional[str] = None
    recognised: Optional[str] = None
    llr: Optional[float] = None

    @property
    def outcome(self) -> str:
        """The decision as the audit trail words it: ``accept``, ``reject`` (by score) or the refusal."""
        return "accept" if self.accepted else "reject" if self.reason in (None, BELOW_THRESHOLD) else self.reason

    def as_json(self, score_kind: str) -> dict:
        """The decision as ``--json`` and the HTTP service give it: its fields, ``score_kind`` and ``decision``
        (:attr:`outcome`, the word of its audit row)."""
        return {**self._asdict(), "score_kind": score_kind, "decision": self.outcome}


class ClaimError(ValueError):
    """A claim or challenge that could not be decided (unusable audio, unknown speaker, no recogniser, ...).

    The message is one line; the failure is logged as an ``error`` event, ``event_id`` (None if the database could
    not take it); the original exception (e.g. :class:`AudioError`, :class:`VoiceprintError`) is ``__cause__``.
    """

    def __init__(self, message: str, event_id: Optional[int]) -> None:
        super().__init__(message)
        self.event_id = event_id


class DigitRecognizer(Protocol):
    """What a digit recogniser offers (:mod:`speechbrain_ext.digits`; tests inject their own)."""

    def transcribe(self, wav: torch.Tensor) -> str:
        """The digits spoken in ``wav`` ([T], 16 kHz), as a string of ``0``-``9``."""


def audio_hash(audio: "Audio") -> Optional[str]:
    """SHA-256 (hex) of an audio file's bytes (a path or an open file: an upload hashes as the file it came from),
    or of float32 samples; None for a file that cannot be read."""
    if isinstance(audio, (torch.Tensor, np.ndarray)):
        samples = torch.as_tensor(audio, dtype=torch.float32).cpu().contiguous().numpy()
        return hashlib.sha256(samples.tobytes()).hexdigest()
    if hasattr(audio, "read"):
        start = audio.tell()
        digest = hashlib.sha256(audio.read()).hexdigest()
        audio.seek(start)
        return digest
    return audio_sha256(audio)


@dataclass(frozen=True)
class QualityCheck:
    """Limits an utterance must meet to be enrolled or scored.

    Example
    -------
    >>> QualityCheck().problem(torch.zeros(16000))
    'silent (RMS -inf dBFS, below -60 dBFS)'
    >>> QualityCheck().problem(0.1 * torch.randn(4000))
    'too short (0.25 s, minimum 0.5 s)'
    """

    min_duration: float = 0.5  # shortest usable utterance, seconds
    silence_dbfs: float = -60.0  # RMS level below which audio counts as silent, dB relative to full scale
    clip_fraction: float = 0.01  # largest tolerated fraction of samples at full scale (|x| >= clip_level)
    clip_level: float = 0.999  # magnitude counted as full scale (float samples in [-1, 1])

    def problem(self, wav: torch.Tensor) -> Optional[str]:
        """Why ``wav`` ([T], 16 kHz, float in [-1, 1]) is unusable, or None."""
        seconds = wav.numel() / SAMPLE_RATE
        if seconds < self.min_duration:
            return f"too short ({seconds:.2f} s, minimum {self.min_duration:g} s)"
        if not torch.isfinite(wav).all():
            return "has NaN/inf samples"
        rms = float(wav.double().pow(2).mean().sqrt())
        dbfs = 20 * math.log10(rms) if rms > 0 else -math.inf
        if dbfs < self.silence_dbfs:
            return f"silent (RMS {dbfs:.1f} dBFS, below {self.silence_dbfs:g} dBFS)"
        clipped = float((wav.abs() >= self.clip_level).double().mean())
        if clipped > self.clip_fraction:
            return f"clipped ({100 * clipped:.1f}% of samples at full scale, limit {100 * self.clip_fraction:g}%)"
        return None


def load_audio(audio: Audio, name: str, quality: QualityCheck, resample: bool = False) -> torch.Tensor:
    """A checked mono 16 kHz waveform ``[T]`` from a file (a path or an open binary file, any format soundfile reads)
    or samples ``[T]``/``[1, T]``.

    A file at another rate is an error, unless ``resample`` is set and the rate is higher: it is then resampled to
    16 kHz (``torchaudio.functional.resample``, windowed sinc). Raises :class:`AudioError`, one line naming the file
    (its path, an open file's ``name``, else ``name``) and what is wrong with it.
    """
    if isinstance(audio, (torch.Tensor, np.ndarray)):
        wav = torch.as_tensor(audio, dtype=torch.float32).cpu()
        if wav.dim() == 2 and wav.shape[0] == 1:
            wav = wav[0]
        if wav.dim() != 1:
            raise AudioError(f"{name}: expected samples of shape [T] or [1, T], got {tuple(wav.shape)}")
    else:
        if isinstance(audio, (str, os.PathLike)):
            name = str(audio)
            if not os.path.isfile(audio):
                raise AudioError(f"{name}: no such file")
        else:
            name = str(getattr(audio, "name", name))
        try:
            data, rate = sf.read(audio, dtype="float32", always_2d=True)  # [T, channels]
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise AudioError(f"{name}: cannot read audio ({err})") from None
        if rate < SAMPLE_RATE or (rate != SAMPLE_RATE and not resample):
            expected = f"{SAMPLE_RATE} Hz or more" if resample else f"{SAMPLE_RATE} Hz (resample it first)"
            raise AudioError(f"{name}: sample rate {rate} Hz, expected {expected}")
        wav = torch.from_numpy(data.mean(axis=1))
        if rate != SAMPLE_RATE:
            wav = torchaudio.functional.resample(wav, rate, SAMPLE_RATE)
    problem = quality.problem(wav)
    if problem is not None:
        raise AudioError(f"{name}: {problem}")
    return wav


class Verifier:
    """Enrol, prompt, verify and identify speakers with an exported model and a voiceprint database.

    ``model_folder`` is written by ``speechbrain_ext.export.export_model``; ``db_path`` must be made with this
    model, or is created by the first enrolment when ``create`` is True. ``threshold`` overrides the model's (see
    the module docstring); ``score_kind`` (``"cosine"`` or ``"asnorm"``) is the score ``threshold.json`` is for.
    ``policy`` holds the claim checks besides the score; ``recognizer`` (an object with ``transcribe(wav) -> str``)
    replaces the model folder's digit recogniser, which is otherwise loaded on first use; ``clock`` (Unix time,
    seconds) decides when prompts expire; ``resample`` takes files above 16 kHz (see :func:`load_audio`).

    Example (see ``tests/test_verifier.py``)::

        v = Verifier("model", "voiceprints.db")
        v.enroll("alice", ["a1.wav", "a2.wav", "a3.wav"])
        v.verify("alice", "claim.wav")          # Decision(score=0.71, accepted=True, ..., reason=None, event_id=7)
        c = v.challenge("alice")                # Challenge(nonce='...', speaker_id='alice', digits='407213', ...)
        v.verify("alice", "said_it.wav", c.nonce)  # accepted only if '407213' was heard, in time, once
        v.identify("someone.wav", top_k=3)      # [Decision(...), ...], best first
    """

    def __init__(self, model_folder: PathLike, db_path: PathLike, threshold: Optional[float] = None,
                 device: str = "cpu", quality: QualityCheck = QualityCheck(), create: bool = True,
                 policy: ClaimPolicy = ClaimPolicy(), recognizer: Optional[DigitRecognizer] = None,
                 clock: Callable[[], float] = time.time, resample: bool = False) -> None:
        with tempfile.TemporaryDirectory(prefix="sbext_verifier_") as savedir:
            self.model = load_verifier(model_folder, savedir)  # links in savedir are not needed once loaded
        self.model.mods.to(device)
        self.model.device = device
        self.model.mods.eval()
        self.quality = quality
        folder = Path(model_folder).absolute()
        self.store = VoiceprintStore(db_path, model_hash(folder), str(folder), create=create)
        self.scoring = self.model.scoring
        calibration = self.model.calibration  # the decision of threshold.json, or far mode at a given threshold
        self.calibration = calibration if threshold is None else calibration.with_threshold(threshold)
        self.score_kind = self.scoring.kind
        self.model_folder, self.policy, self.clock, self.resample = folder, policy, clock, resample
        self._recognizer = recognizer

    def embed(self, audio: Audio, name: str = "audio") -> np.ndarray:
        """Embedding of one checked utterance (see :func:`load_audio`), float32 ``[D]``."""
        return self._embed(self._load(audio, name))

    def _load(self, audio: Audio, name: str = "audio") -> torch.Tensor:
        """:func:`load_audio` with this Verifier's quality check and resampling."""
        return load_audio(audio, name, self.quality, self.resample)

    def _embed(self, wav: torch.Tensor) -> np.ndarray:
        """Embedding of a checked waveform ``[T]``, float32 ``[D]``."""
        with torch.inference_mode():
            emb = self.model.encode_batch(wav.unsqueeze(0))  # [1, 1, D]
        return emb.reshape(-1).float().cpu().numpy()

    @property
    def prompts(self) -> bool:
        """Whether this door can check prompted claims: a recogniser was given or the model folder has ``digits/``."""
        return self._recognizer is not None or (self.model_folder / "digits").is_dir()

    def _check_recognizer(self) -> None:
        """Raise :class:`ModelError` unless :attr:`prompts`."""
        if not self.prompts:
            raise ModelError(f"{self.model_folder}: the model has no digit recogniser (digits/), so it cannot "
                             f"prompt; export it with recipes/export.py --digits_model")

    @property
    def recognizer(self) -> DigitRecognizer:
        """The digit recogniser: the one given, else the model folder's, loaded on first use."""
        if self._recognizer is None:
            self._check_recognizer()
            from speechbrain_ext.digits import load_recognizer  # the recogniser's home; only prompted doors need it

            self._recognizer = load_recognizer(self.model_folder)
        return self._recognizer

    def enroll(self, speaker_id: str, audios: Sequence[Audio], replace: bool = True,
               event: Optional[Event] = None) -> int:
        """Enrol (or re-enrol, ``replace``) a speaker from utterances; returns how many the voiceprint averages.

        Every utterance is checked and embedded before the database is touched (the first unusable one raises
        :class:`AudioError`, by path or ``audio #i``); the embeddings, new voiceprint and ``event`` are then
        written in one transaction.
        """
        if isinstance(audios, (str, os.PathLike, torch.Tensor, np.ndarray)) or len(audios) == 0:
            raise ValueError("enroll needs a list of one or more utterances")
        names = [str(a) if isinstance(a, (str, os.PathLike)) else str(getattr(a, "name", f"audio #{i}"))
                 for i, a in enumerate(audios)]
        embeddings = np.stack([self.embed(a, n) for a, n in zip(audios, names)])  # [N, D]
        return self.store.save(speaker_id, embeddings, names, replace, event)

    def _scores(self, speakers: List[str], voiceprints: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Scores of one test embedding [D] against voiceprints [S, D], shape ``[S]``."""
        trials = [(spk, "test") for spk in speakers]
        return self.scoring(trials, (speakers, voiceprints), (["test"], test[None]))

    def _decision(self, score: float, speaker_id: str, seconds: float) -> Decision:
        """The calibrated decision by score alone on one score of a claim of ``seconds``."""
        llr = self.calibration.llr([score], [seconds]) if self.calibration.mode == "llr" else None
        return Decision(float(score), bool(self.calibration.accept([score], [seconds])[0]),
                        float(self.calibration.score_threshold([seconds])[0]), speaker_id,
                        llr=None if llr is None else float(llr[0]))

    def score(self, speaker_id: str, audio: Audio) -> Decision:
        """The score of ``audio`` against ``speaker_id``'s voiceprint and the decision by score alone: no claim
        checks, nothing logged (unknown id: :class:`VoiceprintError`)."""
        return self._score(speaker_id, self._load(audio))

    def _score(self, speaker_id: str, wav: torch.Tensor) -> Decision:
        voiceprint = self.store.voiceprint(speaker_id)
        return self._decision(self._scores([speaker_id], voiceprint[None], self._embed(wav))[0], speaker_id,
                              wav.numel() / SAMPLE_RATE)

    @contextlib.contextmanager
    def _logged_failure(self, event: Event) -> Iterator[None]:
        """Turn a failure of the body into a :class:`ClaimError`, after logging ``event`` as an ``error``."""
        try:
            yield
        except (ValueError, OSError) as err:
            message = str(err).splitlines()[0] if str(err) else type(err).__name__
            event.decision, event.error = "error", message
            event_id = None  # a database that does not exist yet is not created by a failure
            with contextlib.suppress(VoiceprintError, OSError):  # e.g. read-only: the message says why
                event_id = None if self.store.connection is None else self.store.log_event(event)
            raise ClaimError(message, event_id) from err

    def challenge(self, speaker_id: str, digits: int = 6, ttl: float = 60.0) -> Challenge:
        """Issue and store a one-time prompt for an enrolled speaker: ``digits`` random digits (``secrets``) to be
        said within ``ttl`` seconds, named by a random nonce; logged as a ``challenge`` event (``issued``).

        Needs a digit recogniser (else :class:`ClaimError`, as for an unknown speaker or a bad ``digits``/``ttl``).
        """
        event = Event("challenge", speaker_id)
        with self._logged_failure(event):
            if not 1 <= digits <= MAX_PROMPT_DIGITS:
                raise ValueError(f"--digits must be 1 to {MAX_PROMPT_DIGITS}, got {digits}")
            if not (math.isfinite(ttl) and ttl > 0):
                raise ValueError(f"--ttl must be > 0 seconds, got {ttl:g}")
            self._check_recognizer()  # a prompt that no claim could pass is refused now (not loaded: fast start)
            now = self.clock()
            issued = Challenge(secrets.token_urlsafe(NONCE_BYTES), speaker_id,
                               "".join(secrets.choice("0123456789") for _ in range(digits)), now + ttl)
            event.decision, event.prompt, event.nonce = "issued", issued.digits, issued.nonce
            self.store.add_challenge(issued, now, event)
        return issued

    def verify(self, speaker_id: str, audio: Audio, nonce: Optional[str] = None) -> Decision:
        """The claim that ``audio`` is ``speaker_id`` (saying the prompt named ``nonce``, if given): scored, its
        digits recognised, settled by the policy and logged in one transaction (see the module docstring).

        A claim that cannot be decided (unusable audio, unknown speaker, no nonce while the policy requires one,
        a nonce without a recogniser) raises :class:`ClaimError` and is logged as an ``error``; a bad, spent or
        expired nonce is a decision (``accepted`` False, its ``reason``), not an error.
        """
        event = Event("verify", speaker_id, audio_sha256=audio_hash(audio), nonce=nonce)
        with self._logged_failure(event):
            if nonce is None and self.policy.require_challenge:
                raise ValueError("this door takes prompted claims only (--require-challenge): hand in a nonce "
                                 "from `speechbrain-ext challenge`")
            wav = self._load(audio)
            by_score = self._score(speaker_id, wav)
            event.recognised = None if nonce is None else self.recognizer.transcribe(wav)
            return self._settle(event, [by_score])[0]

    def identify(self, audio: Audio, top_k: int = 5) -> List[Decision]:
        """The ``top_k`` best-scoring enrolled speakers for ``audio``, best first; the best match is the claim,
        settled and logged as :meth:`verify` settles one (identify cannot be prompted).

        All voiceprints are scored at once (one ``[S, D] x [D]`` product, plus the cohort products with AS-norm);
        ``accepted`` tells which clear the threshold (and, for the best, pass the claim checks).
        """
        event = Event("identify", audio_sha256=audio_hash(audio))
        with self._logged_failure(event):
            if top_k < 1:
                raise ValueError(f"top_k must be >= 1, got {top_k}")
            if self.policy.require_challenge:
                raise ValueError("this door takes prompted claims only (--require-challenge): identify cannot "
                                 "be prompted")
            speakers, voiceprints = self.store.voiceprints()
            wav = self._load(audio)
            scores = self._scores(speakers, voiceprints, self._embed(wav))
            best = np.argsort(-scores, kind="stable")[:top_k]
            seconds = wav.numel() / SAMPLE_RATE
            return self._settle(event, [self._decision(scores[i], speakers[i], seconds) for i in best])

    def _settle(self, event: Event, ranked: List[Decision]) -> List[Decision]:
        """Settle the claim of ``ranked[0]`` (:func:`record_claim`) and give each decision its reason."""
        best = ranked[0]
        event.speaker_id, event.score, event.threshold = best.speaker_id, best.score, best.threshold
        event.decision = "accept" if best.accepted else "reject"
        final = record_claim(self.store, event, self.policy, self.clock())
        settled = best._replace(accepted=final == "accept", event_id=event.id, prompt=event.prompt,
                                recognised=event.recognised,
                                reason={"accept": None, "reject": BELOW_THRESHOLD}.get(final, final))
        return [settled] + [d._replace(reason=None if d.accepted else BELOW_THRESHOLD) for d in ranked[1:]]

    def close(self) -> None:
        """Close the database connection."""
        self.store.close()

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
