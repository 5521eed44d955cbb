"""Manifests, trial lists and score files: the row type, reading and writing them.

The one home of the project's file formats:

- **Manifest** (SpeechBrain CSV), one :class:`ManifestRow` a line: ``ID,duration,wav,start,stop,spk_id`` plus
  ``genre`` where the corpus has one and ``wrd`` (SpeechBrain's ASR column: the spoken digits, normalised by
  :func:`normalise_digits`; empty when unknown) where it has transcripts. ``wav`` is one audio path or several
  joined by ``;`` (read in order and joined into one signal); ``start``/``stop`` are sample indices at
  :data:`SAMPLE_RATE` into that signal,
  ``stop`` exclusive; ``duration = (stop - start) / SAMPLE_RATE`` seconds.
- **Trial list**: one trial a line, ``enroll_id test_id target|nontarget`` (``1``/``0`` accepted), read as
  :data:`Trial` ``(enroll_id, test_id, label)`` with label 1 = target, 0 = non-target; blank lines skipped.
- **Score file**: ``enroll_id test_id score target|nontarget``.

Every file is written atomically (``io_utils.atomic_write``). A malformed file raises a :class:`ManifestError`
of one line naming the file and line. No torch import: data preparation uses this module and stays light.
"""
import csv
import os
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Collection, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from speechbrain_ext.io_utils import PathLike, atomic_write

SAMPLE_RATE = 16000  # Hz, of every manifest's audio
CSV_FIELDS = ["ID", "duration", "wav", "start", "stop", "spk_id"]
Trial = Tuple[str, str, int]  # (enroll_id, test_id, label): 1 target, 0 non-target
LABELS = {"target": 1, "1": 1, "nontarget": 0, "0": 0}


# Mandarin digit characters (幺 is "one" read out in phone numbers, 〇 a written zero) -> ASCII digits
MANDARIN_DIGITS = {**{c: str(i) for i, c in enumerate("零一二三四五六七八九")}, "幺": "1", "〇": "0"}
_DIGIT_TABLE = str.maketrans(MANDARIN_DIGITS)


def normalise_digits(text: str) -> Optional[str]:
    """The digit string ``text`` says, as the characters ``0``-``9``; None when it is not a digit string.

    Unicode NFKC first (full-width ``１`` -> ``1``), then Mandarin 零一二三四五六七八九 (and 幺 = 1, 〇 = 0) to
    digits, whitespace removed. Anything else left (letters, punctuation, nothing at all) is not a digit string.

    Example
    -------
    >>> normalise_digits("幺三 九零"), normalise_digits(" 4 0 7\t"), normalise_digits("１２")
    ('1390', '407', '12')
    >>> normalise_digits("12a") is None
    True
    >>> normalise_digits(""), normalise_digits("  ")
    (None, None)
    """
    digits = re.sub(r"\s+", "", unicodedata.normalize("NFKC", text).translate(_DIGIT_TABLE))
    return digits if digits and all("0" <= c <= "9" for c in digits) else None


class ManifestError(ValueError):
    """A malformed manifest, trial list or score file; the message is one line naming the file (and line)."""


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row: the signal ``wav`` (one path or a ``;`` list), samples ``[start, stop)``, and ``wrd``, the
    digits spoken in it (:func:`normalise_digits`; ``""``: unknown). ``wrd`` is left out of the repr, to keep it short.

    Example
    -------
    >>> row = ManifestRow("a+1", "/x/a.wav;/x/b.wav", 0, 24000, "spk")
    >>> row.files, row.as_csv()["duration"]
    (['/x/a.wav', '/x/b.wav'], '1.500')
    """

    id: str
    wav: str
    start: int
    stop: int
    spk_id: str = ""
    genre: str = ""
    wrd: str = field(default="", repr=False)

    @property
    def files(self) -> List[str]:
        """The audio files joined into the row's signal, in order."""
        return self.wav.split(";")

    @property
    def duration(self) -> float:
        """Seconds of the row's window ``[start, stop)``."""
        return (self.stop - self.start) / SAMPLE_RATE

    def as_csv(self) -> Dict[str, str]:
        """The row as the manifest's string fields (``genre`` and ``wrd`` included)."""
        return {"ID": self.id, "duration": f"{self.duration:.3f}", "wav": self.wav, "start": str(self.start),
                "stop": str(self.stop), "spk_id": self.spk_id, "genre": self.genre, "wrd": self.wrd}


def read_manifest(path: PathLike) -> List[ManifestRow]:
    """Read a manifest CSV, in file order; refused: a missing file or column (``ID``, ``wav``, ``start``,
    ``stop``), a bad ``start``/``stop`` or a repeated ``ID``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "train.csv")
    >>> write_manifest(path, [ManifestRow("s1/u1", "/a.wav", 0, 16000, "s1")])
    >>> read_manifest(path)
    [ManifestRow(id='s1/u1', wav='/a.wav', start=0, stop=16000, spk_id='s1', genre='')]
    """
    if not os.path.isfile(path):
        raise ManifestError(f"{path}: no such manifest")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"ID", "wav", "start", "stop"} - set(reader.fieldnames or [])
        if missing:
            raise ManifestError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        rows, seen = [], set()
        for line_no, rec in enumerate(reader, start=2):
            try:
                start, stop = int(rec["start"]), int(rec["stop"])
            except (TypeError, ValueError):
                raise ManifestError(f"{path}:{line_no}: start/stop must be integers") from None
            if not 0 <= start < stop:
                raise ManifestError(f"{path}:{line_no}: need 0 <= start < stop, got {start}, {stop}")
            if rec["ID"] in seen:
                raise ManifestError(f"{path}:{line_no}: ID {rec['ID']!r} repeated")
            seen.add(rec["ID"])
            rows.append(ManifestRow(rec["ID"], rec["wav"], start, stop, rec.get("spk_id") or "",
                                    rec.get("genre") or "", rec.get("wrd") or ""))
    return rows


def write_manifest(path: PathLike, rows: Iterable[ManifestRow], with_genre: bool = False) -> None:
    """Write a manifest atomically (the header even when there are no rows); a ``wrd`` column when a row has
    a transcript, so that a corpus without any writes the manifests it always did."""
    rows = list(rows)
    fields = CSV_FIELDS + ["genre"] * with_genre + ["wrd"] * any(row.wrd for row in rows)
    with atomic_write(path, newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(row.as_csv() for row in rows)


def write_audio_list(path: PathLike, wavs: Iterable[Tuple[str, float]]) -> None:
    """Write ``(wav, seconds)`` pairs as the CSV of SpeechBrain's ``AddNoise``/``AddReverb``, atomically
    (``ID,duration,wav,wav_format,wav_opts``, the format of its MUSAN and RIR CSVs)."""
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "wav", "wav_format", "wav_opts"])
        for i, (wav, seconds) in enumerate(wavs):
            writer.writerow([f"{os.path.basename(wav)[:-4]}_{i}", f"{seconds:.3f}", wav, "wav", ""])


def speaker_count(path: PathLike) -> int:
    """Number of distinct ``spk_id`` of a manifest (e.g. the training speakers of ``train.csv``)."""
    return len({row.spk_id for row in read_manifest(path)})


def _labelled_lines(path: PathLike, num_fields: int, expected: str) -> Iterator[Tuple[int, List[str]]]:
    """``(line number, fields)`` of the non-blank lines of a trial or score file, each of ``num_fields`` fields,
    the last a label of :data:`LABELS`."""
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != num_fields or fields[-1] not in LABELS:
                raise ManifestError(f"{path}:{line_no}: expected '{expected}', got {line.strip()!r}")
            yield line_no, fields


def read_trials(path: PathLike, enroll_ids: Optional[Collection[str]] = None,
                test_ids: Optional[Collection[str]] = None) -> List[Trial]:
    """Read and validate a trial list; refused: a malformed line, no trial, or an id not in ``enroll_ids``
    (e.g. the ``ID`` column of ``enroll.csv``) or ``test_ids`` when given.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "trials.txt")
    >>> _ = open(path, "w").write("spk1 utt7 target\\nspk1 utt8 0\\n")
    >>> read_trials(path, enroll_ids={"spk1"})
    [('spk1', 'utt7', 1), ('spk1', 'utt8', 0)]
    """
    enroll_ids = None if enroll_ids is None else set(enroll_ids)
    test_ids = None if test_ids is None else set(test_ids)
    trials = []
    for line_no, (enroll_id, test_id, label) in _labelled_lines(path, 3, "enroll_id test_id target|nontarget|1|0"):
        if enroll_ids is not None and enroll_id not in enroll_ids:
            raise ManifestError(f"{path}:{line_no}: enrolment id {enroll_id!r} is not in the enrolment set")
        if test_ids is not None and test_id not in test_ids:
            raise ManifestError(f"{path}:{line_no}: test id {test_id!r} is not in the test set")
        trials.append((enroll_id, test_id, LABELS[label]))
    if not trials:
        raise ManifestError(f"{path}: the trial list is empty")
    return trials


def write_trials(path: PathLike, trials: Iterable[Trial]) -> None:
    """Write ``enroll_id test_id target|nontarget`` lines atomically."""
    with atomic_write(path) as f:
        f.writelines(f"{enroll_id} {test_id} {'target' if label else 'nontarget'}\n"
                     for enroll_id, test_id, label in trials)


def write_scores(path: PathLike, trials: Sequence[Trial], scores: Sequence[float]) -> None:
    """Write ``enroll_id test_id score target|nontarget`` lines atomically, one finite score ``[T]`` per trial.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.txt")
    >>> write_scores(path, [("spk1", "utt7", 1)], [0.25])
    >>> open(path).read()
    'spk1 utt7 0.250000 target\\n'
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1 or len(scores) != len(trials):
        raise ValueError(f"need one score per trial: {len(trials)} trials, scores of shape {scores.shape}")
    if not np.isfinite(scores).all():
        raise ValueError("scores contain NaN/inf values")
    with atomic_write(path) as f:
        for (enroll_id, test_id, label), score in zip(trials, scores.tolist()):
            f.write(f"{enroll_id} {test_id} {score:.6f} {'target' if label else 'nontarget'}\n")


def read_scores(path: PathLike) -> Tuple[List[Trial], np.ndarray]:
    """Read a :func:`write_scores` file: ``(trials, scores [T])``.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "scores.txt")
    >>> write_scores(path, [("spk1", "utt7", 1), ("spk2", "utt7", 0)], [0.25, -0.5])
    >>> read_scores(path)
    ([('spk1', 'utt7', 1), ('spk2', 'utt7', 0)], array([ 0.25, -0.5 ]))
    """
    trials, scores = [], []
    for line_no, (enroll_id, test_id, score, label) in _labelled_lines(
            path, 4, "enroll_id test_id score target|nontarget"):
        try:
            scores.append(float(score))
        except ValueError:
            raise ManifestError(f"{path}:{line_no}: score {score!r} is not a number") from None
        trials.append((enroll_id, test_id, LABELS[label]))
    if not trials:
        raise ManifestError(f"{path}: no scores")
    return trials, np.asarray(scores)
