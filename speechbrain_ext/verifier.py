"""Access-control front end: enrol speakers, verify claims, identify voices.

A :class:`Verifier` joins an exported model folder (loaded offline through SpeechBrain's ``SpeakerRecognition``,
see :func:`speechbrain_ext.inference.load_verifier`) and a :class:`~speechbrain_ext.voiceprints.VoiceprintStore`.

Scoring, for a voiceprint ``v`` [D] (mean of normalised enrolment embeddings) and a test embedding ``t`` [D]::

    s = <v/|v|, t/|t|>                                   plain cosine
    s' = 0.5 * [(s - mu_v)/sigma_v + (s - mu_t)/sigma_t]  AS-norm (scoring.as_norm)

The score is the one the model's threshold was calibrated on: the :class:`~speechbrain_ext.scoring.Scoring`
named by the folder's ``threshold.json`` (AS-norm with its ``cohort.pt``, see
:func:`speechbrain_ext.calibration.load_scoring`); voiceprints are ``scoring.voiceprints``, as in evaluation. A claim
is accepted iff ``score >= threshold`` (the convention of ``speechbrain_ext.metrics``). The threshold is the one
given, else ``threshold.json``'s, else SpeechBrain's 0.25 with a warning.

Audio (:func:`load_audio`), enrolment and test alike, must be readable, at 16 kHz (no resampling: a wrong rate is an
error naming the rate found; the HTTP service, which takes what browsers record, resamples higher rates with
``resample=True``) and pass :class:`QualityCheck` (long enough, not silent, not clipped). Multi-channel
files are down-mixed to mono by averaging the channels (door units often record the same signal twice).
"""
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, List, NamedTuple, Optional, Sequence, Union

import numpy as np
import soundfile as sf
import torch
import torchaudio

from speechbrain_ext.audio import AudioError
from speechbrain_ext.inference import load_verifier
from speechbrain_ext.manifest import SAMPLE_RATE, PathLike
from speechbrain_ext.voiceprints import Event, VoiceprintStore, model_hash

Audio = Union[PathLike, BinaryIO, torch.Tensor, np.ndarray]  # BinaryIO: an open file, e.g. an upload


class Decision(NamedTuple):
    """Outcome of one claim: ``accepted = score >= threshold``."""

    score: float
    accepted: bool
    threshold: float
    speaker_id: str


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
    (or, for samples and open files, ``name``) and what is wrong with it.
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
    """Enrol, verify and identify speakers with an exported model and a voiceprint database.

    ``model_folder`` is written by ``speechbrain_ext.export.export_model``; ``db_path`` must be made with this
    model, or is created by the first enrolment when ``create`` is True. ``threshold`` overrides the model's (see
    the module docstring); ``score_kind`` (``"cosine"`` or ``"asnorm"``) is the score ``threshold.json`` is for.

    Example (see ``tests/test_verifier.py``)::

        v = Verifier("model", "voiceprints.db")
        v.enroll("alice", ["a1.wav", "a2.wav", "a3.wav"])
        v.verify("alice", "claim.wav")      # Decision(score=0.71, accepted=True, ...)
        v.identify("someone.wav", top_k=3)  # [Decision(...), ...], best first
    """

    def __init__(self, model_folder: PathLike, db_path: PathLike, threshold: Optional[float] = None,
                 device: str = "cpu", quality: QualityCheck = QualityCheck(), create: bool = True) -> None:
        with tempfile.TemporaryDirectory(prefix="sbext_verifier_") as savedir:
            self.model = load_verifier(model_folder, savedir)  # links in savedir are not needed once loaded
        self.model.mods.to(device)
        self.model.device = device
        self.model.mods.eval()
        self.quality = quality
        folder = Path(model_folder).absolute()
        self.store = VoiceprintStore(db_path, model_hash(folder), str(folder), create=create)
        self.scoring = self.model.scoring
        self.threshold = float(self.model.threshold if threshold is None else threshold)
        self.score_kind = self.scoring.kind

    def embed(self, audio: Audio, name: str = "audio") -> np.ndarray:
        """Embedding of one checked utterance (see :func:`load_audio`), float32 ``[D]``."""
        wav = load_audio(audio, name, self.quality)
        with torch.inference_mode():
            emb = self.model.encode_batch(wav.unsqueeze(0))  # [1, 1, D]
        return emb.reshape(-1).float().cpu().numpy()

    def enroll(self, speaker_id: str, audios: Sequence[Audio], replace: bool = True,
               event: Optional[Event] = None, names: Optional[Sequence[str]] = None) -> int:
        """Enrol (or re-enrol, ``replace``) a speaker from utterances; returns how many the voiceprint averages.

        Every utterance is checked and embedded before the database is touched (the first unusable one raises
        :class:`AudioError`, by ``names[i]``, else by path or ``audio #i``); the embeddings, new voiceprint and
        ``event`` are then written in one transaction, with the names as the embeddings' sources.
        """
        if isinstance(audios, (str, os.PathLike, torch.Tensor, np.ndarray)) or len(audios) == 0:
            raise ValueError("enroll needs a list of one or more utterances")
        if names is None:
            names = [str(a) if isinstance(a, (str, os.PathLike)) else f"audio #{i}" for i, a in enumerate(audios)]
        embeddings = np.stack([self.embed(a, n) for a, n in zip(audios, names)])  # [N, D]
        return self.store.save(speaker_id, embeddings, names, replace, event)

    def _scores(self, speakers: List[str], voiceprints: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Scores of one test embedding [D] against voiceprints [S, D], shape ``[S]``."""
        trials = [(spk, "test") for spk in speakers]
        return self.scoring(trials, (speakers, voiceprints), (["test"], test[None]))

    def _decision(self, score: float, speaker_id: str) -> Decision:
        return Decision(float(score), float(score) >= self.threshold, self.threshold, speaker_id)

    def verify(self, speaker_id: str, audio: Audio) -> Decision:
        """Score a claim that ``audio`` is ``speaker_id`` against the threshold (unknown id: VoiceprintError)."""
        voiceprint = self.store.voiceprint(speaker_id)
        return self._decision(self._scores([speaker_id], voiceprint[None], self.embed(audio))[0], speaker_id)

    def identify(self, audio: Audio, top_k: int = 5) -> List[Decision]:
        """The ``top_k`` best-scoring enrolled speakers for ``audio``, best first.

        All voiceprints are scored at once (one ``[S, D] x [D]`` product, plus the cohort products with AS-norm);
        ``accepted`` tells which clear the threshold.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        speakers, voiceprints = self.store.voiceprints()
        scores = self._scores(speakers, voiceprints, self.embed(audio))
        best = np.argsort(-scores, kind="stable")[:top_k]
        return [self._decision(scores[i], speakers[i]) for i in best]

    def close(self) -> None:
        """Close the database connection."""
        self.store.close()

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
