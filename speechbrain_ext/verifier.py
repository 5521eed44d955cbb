"""Access-control front end: enrol speakers, verify claims, identify voices.

A :class:`Verifier` joins an exported model folder (loaded offline through
SpeechBrain's ``SpeakerRecognition``, see :func:`speechbrain_ext.inference.load_verifier`)
and a :class:`~speechbrain_ext.voiceprints.VoiceprintStore`.

Scoring, for a voiceprint ``v`` [D] (mean of normalised enrolment embeddings)
and a test embedding ``t`` [D]::

    s = <v/|v|, t/|t|>                                   plain cosine
    s' = 0.5 * [(s - mu_v)/sigma_v + (s - mu_t)/sigma_t]  AS-norm (scoring.as_norm)

The score is the one the model's threshold was calibrated on: the
:class:`~speechbrain_ext.scoring.Scoring` named by the folder's
``threshold.json`` (AS-norm with its ``cohort.pt``, see
:func:`speechbrain_ext.calibration.load_scoring`); voiceprints are
``scoring.voiceprints``, as in evaluation. A claim is accepted iff
``score >= threshold`` (the convention of ``speechbrain_ext.metrics``). The
threshold is the one given, else ``threshold.json``'s, else SpeechBrain's
0.25 with a warning.

Audio quality (:class:`QualityCheck`), applied to enrolment and test audio
alike: a file must be readable, at 16 kHz (no resampling: a wrong rate is an
error naming the rate found), at least ``min_duration`` long, not silent (RMS
below ``silence_dbfs``) and not clipped (more than ``clip_fraction`` of the
samples at full scale). Multi-channel files are down-mixed to mono by
averaging the channels (door units often record the same signal twice).
"""
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import List, NamedTuple, Optional, Sequence, Union

import numpy as np
import soundfile as sf
import torch

from speechbrain_ext.audio import AudioError
from speechbrain_ext.inference import load_verifier
from speechbrain_ext.manifest import SAMPLE_RATE, PathLike
from speechbrain_ext.voiceprints import Event, VoiceprintStore, model_hash

Audio = Union[PathLike, torch.Tensor, np.ndarray]


class Decision(NamedTuple):
    """Outcome of one claim: ``accepted = score >= threshold``."""

    score: float
    accepted: bool
    threshold: float
    speaker_id: str


@dataclass(frozen=True)
class QualityCheck:
    """Limits an utterance must meet to be enrolled or scored.

    Arguments
    ---------
    min_duration : float
        Shortest usable utterance, seconds.
    silence_dbfs : float
        RMS level below which audio counts as silent, dB relative to full scale.
    clip_fraction : float
        Largest tolerated fraction of samples at full scale (``|x| >= clip_level``).
    clip_level : float
        Magnitude counted as full scale (float samples in [-1, 1]).

    Example
    -------
    >>> QualityCheck().problem(torch.zeros(16000))
    'silent (RMS -inf dBFS, below -60 dBFS)'
    >>> QualityCheck().problem(0.1 * torch.randn(4000))
    'too short (0.25 s, minimum 0.5 s)'
    """

    min_duration: float = 0.5
    silence_dbfs: float = -60.0
    clip_fraction: float = 0.01
    clip_level: float = 0.999

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


def load_audio(audio: Audio, name: str, quality: QualityCheck) -> torch.Tensor:
    """A checked mono 16 kHz waveform ``[T]`` from a file path or a tensor/array.

    Arguments
    ---------
    audio : path, torch.Tensor or np.ndarray
        Audio file (any format soundfile reads), or samples at 16 kHz,
        shape ``[T]`` or ``[1, T]``.
    name : str
        How to call the audio in errors (the path is used for files).
    quality : QualityCheck
        Limits to apply.

    Raises
    ------
    AudioError
        One line: the file (or ``name``) and what is wrong with it.
    """
    if isinstance(audio, (torch.Tensor, np.ndarray)):
        wav = torch.as_tensor(audio, dtype=torch.float32).cpu()
        if wav.dim() == 2 and wav.shape[0] == 1:
            wav = wav[0]
        if wav.dim() != 1:
            raise AudioError(f"{name}: expected samples of shape [T] or [1, T], got {tuple(wav.shape)}")
    else:
        name = str(audio)
        if not os.path.isfile(audio):
            raise AudioError(f"{name}: no such file")
        try:
            data, rate = sf.read(audio, dtype="float32", always_2d=True)  # [T, channels]
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise AudioError(f"{name}: cannot read audio ({err})") from None
        if rate != SAMPLE_RATE:
            raise AudioError(f"{name}: sample rate {rate} Hz, expected {SAMPLE_RATE} Hz (resample it first)")
        wav = torch.from_numpy(data.mean(axis=1))
    problem = quality.problem(wav)
    if problem is not None:
        raise AudioError(f"{name}: {problem}")
    return wav


class Verifier:
    """Enrol, verify and identify speakers with an exported model and a voiceprint database.

    Arguments
    ---------
    model_folder : path
        Folder written by ``speechbrain_ext.export.export_model``.
    db_path : path
        Voiceprint database; made with this model, or created by the first
        enrolment when ``create`` is True.
    threshold : float, optional
        Decision threshold overriding the model's (see module docstring).
    device : str
        Torch device for the embedding model.
    quality : QualityCheck
        Audio limits for enrolment and test audio.
    create : bool
        Create the database if it does not exist.

    Attributes
    ----------
    threshold : float
        The decision threshold in use.
    score_kind : str
        ``"cosine"`` or ``"asnorm"``: the score ``threshold.json`` is for.
    store : VoiceprintStore
        The open database.

    Example
    -------
    See ``tests/test_verifier.py``; in short::

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
               event: Optional[Event] = None) -> int:
        """Enrol (or re-enrol) a speaker from several utterances.

        Every utterance is checked and embedded before the database is
        touched; the embeddings and the new voiceprint are then written in
        one transaction.

        Arguments
        ---------
        speaker_id : str
            Who is enrolling.
        audios : sequence of path, tensor or array
            Utterances (files, or 16 kHz samples ``[T]``), at least one.
        replace : bool
            True: drop the speaker's previous utterances; False: add to them.
        event : Event, optional
            Audit row logged in the enrolment's transaction.

        Returns
        -------
        int
            Number of utterances the voiceprint now averages.

        Raises
        ------
        AudioError
            The first unusable utterance, by path (or ``audio #i``), and why.
        """
        if isinstance(audios, (str, os.PathLike, torch.Tensor, np.ndarray)) or len(audios) == 0:
            raise ValueError("enroll needs a list of one or more utterances")
        names = [str(a) if isinstance(a, (str, os.PathLike)) else f"audio #{i}" for i, a in enumerate(audios)]
        embeddings = np.stack([self.embed(a, n) for a, n in zip(audios, names)])  # [N, D]
        return self.store.save(speaker_id, embeddings, names, replace, event)

    def _scores(self, speakers: List[str], voiceprints: np.ndarray, test: np.ndarray) -> np.ndarray:
        """Scores of one test embedding [D] against voiceprints [S, D], shape ``[S]``."""
        trials = [(spk, "test") for spk in speakers]
        return self.scoring(trials, (speakers, voiceprints), (["test"], test[None]))

    def verify(self, speaker_id: str, audio: Audio) -> Decision:
        """Score a claim that ``audio`` is ``speaker_id`` against the threshold.

        Raises
        ------
        VoiceprintError
            Unknown speaker id or empty database.
        AudioError
            Unusable audio.
        """
        voiceprint = self.store.voiceprint(speaker_id)
        score = float(self._scores([speaker_id], voiceprint[None], self.embed(audio))[0])
        return Decision(score, score >= self.threshold, self.threshold, speaker_id)

    def identify(self, audio: Audio, top_k: int = 5) -> List[Decision]:
        """The ``top_k`` best-scoring enrolled speakers for ``audio``, best first.

        All voiceprints are scored at once (one ``[S, D] x [D]`` product, plus
        the cohort products with AS-norm); ``accepted`` tells which clear the
        threshold.
        """
        if top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {top_k}")
        speakers, voiceprints = self.store.voiceprints()
        scores = self._scores(speakers, voiceprints, self.embed(audio))
        best = np.argsort(-scores, kind="stable")[:top_k]
        return [Decision(float(scores[i]), bool(scores[i] >= self.threshold), self.threshold, speakers[i])
                for i in best]

    def close(self) -> None:
        """Close the database connection."""
        self.store.close()

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
