"""Helpers shared by every ``prepare_<corpus>()``: scan, validate, group, write.

Header-only audio scan (``soundfile``; FLAC files are checked by reading their
last frames, WAV files by comparing the ``data`` chunk size with the file
size), optional transcripts (:func:`read_transcripts`), a skip log with a
one-line summary, grouping of training utterances
(concatenation of short ones, chunking of long ones), test-duration crops,
trial generation and the ``skip_prep`` check. Manifests and trial lists are
written by ``speechbrain_ext.manifest``.

Also the pieces of the built-in corpus generators (``synth_digits.py``,
``recorded_voices.py``): sox decoding to 16 kHz float, atomic 16-bit PCM
writing, seeding by domain, the ``.corpus.json`` reuse check, the summary and
a command line whose errors are one line.

No torch or SpeechBrain import here (nor in ``speechbrain_ext.manifest``):
preparation stays light and fast.
"""
import argparse
import collections
import hashlib
import io
import json
import logging
import multiprocessing
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
from tqdm import tqdm

from speechbrain_ext.io_utils import atomic_write
from speechbrain_ext.manifest import SAMPLE_RATE, ManifestRow, Trial, normalise_digits

logger = logging.getLogger(__name__)

AUDIO_SUFFIXES = (".wav", ".flac")
TRANSCRIPTS_FILE = "transcripts.tsv"  # <root>/transcripts.tsv: relative/path.wav<TAB>text, one file a line
OPTS_FILE = "prep_opts.json"
OUTPUTS_FILE = "prep_outputs.txt"
LOG_FILE = "prep.log"


class PrepError(Exception):
    """A problem with the input data; its message is one line naming the path."""


class OptionError(ValueError):
    """An invalid preparation option (reported by the CLIs as a usage error)."""


@dataclass(frozen=True)
class Utterance:
    """One validated audio file.

    Arguments
    ---------
    id : str
        Row id, without whitespace (e.g. ``spk1/utt3``).
    path : str
        Absolute audio path.
    frames : int
        Number of samples (16 kHz, mono).
    spk_id : str
        Speaker label.
    genre : str
        Genre (CN-Celeb) or ``""``.
    wrd : str
        The digits spoken (``manifest.normalise_digits``) or ``""``: no transcript.
    """

    id: str
    path: str
    frames: int
    spk_id: str
    genre: str = ""
    wrd: str = ""


def utterance_row(utt: Utterance, start: int = 0, stop: Optional[int] = None, row_id: str = "") -> ManifestRow:
    """Return the row of one utterance (whole file unless ``start``/``stop`` given). Only a whole file carries
    its transcript: what a chunk or crop of it says is not known."""
    stop = utt.frames if stop is None else stop
    wrd = utt.wrd if (start, stop) == (0, utt.frames) else ""
    return ManifestRow(row_id or utt.id, utt.path, start, stop, utt.spk_id, utt.genre, wrd)


def joined_row(row_id: str, utts: Sequence[Utterance], spk_id: str, genre: str = "") -> ManifestRow:
    """One row of several utterances joined in order (a ``;`` list), their whole signal; its ``wrd`` is their
    transcripts concatenated (``""`` when one of them has none).

    Example
    -------
    >>> row = joined_row("s-enroll", [Utterance("s/a", "/a.wav", 3, "s", wrd="12"),
    ...                               Utterance("s/b", "/b.wav", 4, "s", wrd="345")], "s")
    >>> row, row.wrd
    (ManifestRow(id='s-enroll', wav='/a.wav;/b.wav', start=0, stop=7, spk_id='s', genre=''), '12345')
    """
    wrd = "".join(u.wrd for u in utts) if all(u.wrd for u in utts) else ""
    return ManifestRow(row_id, ";".join(u.path for u in utts), 0, sum(u.frames for u in utts), spk_id, genre, wrd)


def sanitize_id(name: str) -> str:
    """Replace whitespace so that an id fits a space-separated trial line.

    Example
    -------
    >>> sanitize_id("spk 1/utt\\t2")
    'spk_1/utt_2'
    """
    return re.sub(r"\s+", "_", name)


# ----------------------------------------------------------------- audio scan
def _wav_is_truncated(path: str, size: int) -> bool:
    """True if the WAV ``data`` chunk claims more bytes than the file holds."""
    with open(path, "rb") as f:
        if f.read(12)[8:12] != b"WAVE":
            return False
        pos = 12
        while pos + 8 <= size:
            f.seek(pos)
            chunk_id, chunk_size = struct.unpack("<4sI", f.read(8))
            if chunk_id == b"data":
                return pos + 8 + chunk_size > size
            pos += 8 + chunk_size + (chunk_size & 1)
    return True


def probe_audio(path: str) -> Tuple[str, int, str, str]:
    """Read one file's header and check it without decoding the whole file.

    A FLAC file is also seeked to its last sample, which decodes only the
    last block and fails if the file was cut short; a WAV file's ``data``
    chunk size is compared with the file size.

    Returns
    -------
    (path, frames, reason, detail): ``reason`` is ``""`` for a usable file,
    else one of ``empty``, ``unreadable``, ``truncated``, ``zero_duration``,
    ``stereo``, ``not_16k``; ``detail`` says what was found.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "e.wav"); open(p, "wb").close()
    >>> probe_audio(p)[2:]
    ('empty', '0 bytes')
    """
    try:
        size = os.path.getsize(path)
        if size == 0:
            return path, 0, "empty", "0 bytes"
        with sf.SoundFile(path) as f:
            frames, rate, channels = f.frames, f.samplerate, f.channels
            if frames <= 0:
                return path, 0, "zero_duration", "0 samples"
            if channels != 1:
                return path, 0, "stereo", f"found {channels} channels, the recipe expects mono"
            if rate != SAMPLE_RATE:
                return path, 0, "not_16k", f"found {rate} Hz, the recipe expects {SAMPLE_RATE} Hz"
            if path.lower().endswith(".wav"):
                truncated = _wav_is_truncated(path, size)
            else:
                truncated = not _can_seek(f, frames - 1)
    except (RuntimeError, OSError, struct.error) as e:
        return path, 0, "unreadable", str(e).splitlines()[0] if str(e) else type(e).__name__
    if truncated:
        return path, 0, "truncated", f"header says {frames} samples, the file ends earlier"
    return path, frames, "", ""


def _can_seek(f: sf.SoundFile, frame: int) -> bool:
    """True if ``f`` can be positioned at ``frame`` (libsndfile decodes that block)."""
    try:
        return f.seek(frame) == frame
    except RuntimeError:
        return False


class PrepLog:
    """Collects skipped files and notes; writes ``prep.log`` with a summary.

    Example
    -------
    >>> log = PrepLog()
    >>> log.skip("/a.wav", "unreadable", "bad header")
    >>> log.skip("/b.wav", "empty", "0 bytes")
    >>> log.skip("/c.wav", "unreadable", "bad header")
    >>> log.summary("prep.log")
    'skipped 3 files: 2 unreadable, 1 empty — see prep.log'
    """

    def __init__(self) -> None:
        self.lines: List[str] = []
        self.skips: collections.Counter = collections.Counter()
        self.transcript_skips = 0

    def skip_transcript(self, path: str, text: str) -> None:
        """Record a transcript that is not a digit string: the file stays, without ``wrd`` (no recogniser
        training on it)."""
        self.transcript_skips += 1
        self.lines.append(f"SKIP not_digits (recogniser training only): {path} ({text!r})")
        logger.debug("transcript of %s is not a digit string: %r", path, text)

    def skip(self, path: str, reason: str, detail: str) -> None:
        """Record a skipped file."""
        self.skips[reason] += 1
        self.lines.append(f"SKIP {reason}: {path} ({detail})")
        logger.debug("skip %s: %s (%s)", reason, path, detail)

    def note(self, message: str) -> None:
        """Record a note (logged at INFO and kept for ``prep.log``)."""
        self.lines.append(f"NOTE {message}")
        logger.info(message)

    def summary(self, log_path: str) -> str:
        """One line: how many files were skipped, by reason."""
        total = sum(self.skips.values())
        if not total:
            return f"skipped 0 files — see {log_path}"
        counts = sorted(self.skips.items(), key=lambda item: (-item[1], item[0]))
        parts = ", ".join(f"{n} {reason}" for reason, n in counts)
        return f"skipped {total} file{'s' * (total != 1)}: {parts} — see {log_path}"

    def write(self, save_folder: Path) -> None:
        """Write ``prep.log`` atomically and log the summary line."""
        log_path = save_folder / LOG_FILE
        summary = self.summary(str(log_path))
        with atomic_write(log_path) as f:
            f.write("\n".join(self.lines + [summary]) + "\n")
        (logger.warning if self.skips else logger.info)(summary)


def scan_audio(paths: Sequence[str], log: PrepLog, num_workers: int = 2, desc: str = "scan") -> Dict[str, int]:
    """Probe ``paths`` in a process pool; return ``{path: frames}`` of usable files.

    Bad files are recorded in ``log`` and left out.
    """
    frames: Dict[str, int] = {}
    chunksize = max(1, min(512, len(paths) // (8 * max(1, num_workers))))
    with tqdm(total=len(paths), desc=desc, unit="file", mininterval=1.0, disable=None) as bar:
        if num_workers > 1 and len(paths) > 1:
            with multiprocessing.Pool(num_workers) as pool:
                results = pool.imap(probe_audio, paths, chunksize=chunksize)
                _collect(results, frames, log, bar)
        else:
            _collect(map(probe_audio, paths), frames, log, bar)
    return frames


def _collect(results: Iterable[Tuple[str, int, str, str]], frames: Dict[str, int], log: PrepLog, bar: tqdm) -> None:
    for path, n, reason, detail in results:
        if reason:
            log.skip(path, reason, detail)
        else:
            frames[path] = n
        bar.update()


def list_audio(folder: Path) -> List[Path]:
    """All ``.wav``/``.flac`` files under ``folder`` (recursive), sorted."""
    found = []
    for root, _dirs, files in os.walk(folder):
        found.extend(Path(root) / name for name in files if name.lower().endswith(AUDIO_SUFFIXES))
    return sorted(found)


# ---------------------------------------------------------------- transcripts
def transcripts_fingerprint(root: Path) -> Optional[str]:
    """SHA-1 of ``<root>/transcripts.tsv`` (None without one), for ``prep_opts.json``: new transcripts redo
    the preparation. (``<utt>.txt`` files are not fingerprinted: re-run with another ``save_folder``.)"""
    path = root / TRANSCRIPTS_FILE
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else None


def read_transcripts(root: Path, files: Sequence[Path], log: PrepLog) -> Dict[str, str]:
    """``{absolute audio path: digits}`` of the files that have a transcript which is a digit string.

    A file's transcript is its line of ``<root>/transcripts.tsv`` (``relative/path.wav<TAB>text``), else the
    text of ``<utt>.txt`` beside it. Texts are normalised with ``manifest.normalise_digits``; one that is not
    a digit string is a counted skip in ``log`` (the file is still used, without ``wrd``). A line without a tab
    is a :class:`PrepError` naming the line; lines naming files that are not found are counted in a note.

    Example
    -------
    >>> import tempfile
    >>> root = Path(tempfile.mkdtemp()); (root / "s").mkdir()
    >>> _ = (root / TRANSCRIPTS_FILE).write_text("s/a.wav\\t幺二三\\ns/b.wav\\thello\\n", encoding="utf-8")
    >>> _ = (root / "s" / "c.txt").write_text("4 5\\n")
    >>> log = PrepLog()
    >>> found = read_transcripts(root, [root / "s" / n for n in ("a.wav", "b.wav", "c.wav")], log)
    >>> sorted((Path(p).name, d) for p, d in found.items()), log.transcript_skips
    ([('a.wav', '123'), ('c.wav', '45')], 1)
    """
    wanted = {p.relative_to(root).as_posix(): str(p.resolve()) for p in files}
    texts: Dict[str, str] = {}
    table = root / TRANSCRIPTS_FILE
    if table.is_file():
        unknown = 0
        for line_no, line in enumerate(table.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            if "\t" not in line:
                raise PrepError(f"{table}:{line_no}: expected 'relative/path.wav<TAB>text', got {line.strip()!r}")
            rel, text = line.split("\t", 1)
            if rel.strip() in wanted:
                texts[wanted[rel.strip()]] = text
            else:
                unknown += 1
        if unknown:
            log.note(f"{unknown} lines of {table} name no usable audio file under {root}: ignored")
    for path in files:
        sidecar = path.with_suffix(".txt")
        resolved = str(path.resolve())
        if resolved not in texts and sidecar.is_file():
            texts[resolved] = sidecar.read_text(encoding="utf-8")
    digits = {}
    for path, text in texts.items():
        normalised = normalise_digits(text)
        if normalised is None:
            log.skip_transcript(path, text.strip())
        else:
            digits[path] = normalised
    if texts:
        log.note(f"transcripts: {len(digits)} of {len(files)} files have digits"
                 + (f", {log.transcript_skips} transcripts are not digit strings (recogniser training skips "
                    "those files)" if log.transcript_skips else ""))
    return digits


# ------------------------------------------------------------ training rows
def check_durations(min_duration: float, max_duration: float) -> None:
    """Validate the concatenation/chunking options (``0`` disables either).

    Chunks of a file longer than ``max_duration`` are at least
    ``max_duration / 2`` long, so ``max_duration >= 2 * min_duration`` keeps
    every chunk at least ``min_duration`` long.
    """
    if min_duration < 0 or max_duration < 0:
        raise OptionError("min_duration and max_duration must be >= 0")
    if max_duration and max_duration < 2 * min_duration:
        raise OptionError(
            f"max_duration ({max_duration}) must be 0 (no chunking) or >= 2 * min_duration ({min_duration})"
        )


def chunk(utt: Utterance, max_frames: int) -> List[ManifestRow]:
    """Cut an utterance longer than ``max_frames`` into equal consecutive chunks.

    Example
    -------
    >>> u = Utterance("s/a", "/a.wav", 25, "s")
    >>> [(r.id, r.start, r.stop) for r in chunk(u, 10)]
    [('s/a#0', 0, 8), ('s/a#1', 8, 16), ('s/a#2', 16, 25)]
    """
    if not max_frames or utt.frames <= max_frames:
        return [utterance_row(utt)]
    num = -(-utt.frames // max_frames)
    bounds = [utt.frames * k // num for k in range(num + 1)]
    return [utterance_row(utt, a, b, f"{utt.id}#{k}") for k, (a, b) in enumerate(zip(bounds, bounds[1:]))]


def concatenate(utts: Sequence[Utterance], min_frames: int) -> List[ManifestRow]:
    """Join consecutive utterances (one speaker and genre) until ``min_frames``.

    A remainder still under ``min_frames`` is appended to the last group;
    when the whole list is shorter it becomes one (short) row. The id is the
    first utterance's id plus ``+<number of further files>``.

    Example
    -------
    >>> us = [Utterance(f"s/{i}", f"/{i}.wav", n, "s") for i, n in enumerate([3, 3, 4, 1])]
    >>> [(r.id, r.wav, r.stop) for r in concatenate(us, 5)]
    [('s/0+1', '/0.wav;/1.wav', 6), ('s/2+1', '/2.wav;/3.wav', 5)]
    """
    groups: List[List[Utterance]] = [[]]
    for utt in utts:
        groups[-1].append(utt)
        if sum(u.frames for u in groups[-1]) >= min_frames:
            groups.append([])
    if not groups[-1]:
        groups.pop()
    elif len(groups) > 1:
        groups[-2].extend(groups.pop())
    return [_joined_row(group) for group in groups]


def _joined_row(group: Sequence[Utterance]) -> ManifestRow:
    first = group[0]
    if len(group) == 1:
        return utterance_row(first)
    return joined_row(f"{first.id}+{len(group) - 1}", group, first.spk_id, first.genre)


def training_rows(utts: Sequence[Utterance], min_duration: float, max_duration: float) -> List[ManifestRow]:
    """Rows for training: short files concatenated per speaker and genre, long ones chunked.

    Files under ``min_duration`` seconds are joined (:func:`concatenate`),
    files over ``max_duration`` are cut (:func:`chunk`), the rest are kept
    whole. ``0`` disables either step.
    """
    min_frames, max_frames = int(min_duration * SAMPLE_RATE), int(max_duration * SAMPLE_RATE)
    groups: Dict[Tuple[str, str], List[Utterance]] = collections.defaultdict(list)
    rows: List[ManifestRow] = []
    for utt in sorted(utts, key=lambda u: u.id):
        if utt.frames < min_frames:
            groups[(utt.spk_id, utt.genre)].append(utt)
        else:
            rows.extend(chunk(utt, max_frames))
    for key in sorted(groups):
        rows.extend(concatenate(groups[key], min_frames))
    return sorted(rows, key=lambda r: r.id)


def split_valid(
    by_speaker: Dict[str, List[Utterance]], valid_ratio: float, rng: np.random.Generator
) -> Tuple[List[Utterance], List[Utterance]]:
    """Hold out about ``valid_ratio`` of each speaker's files (at least one, never all).

    Speakers with a single file stay wholly in training.
    """
    train: List[Utterance] = []
    valid: List[Utterance] = []
    for spk in sorted(by_speaker):
        utts = sorted(by_speaker[spk], key=lambda u: u.id)
        num_valid = 0
        if valid_ratio > 0 and len(utts) > 1:
            num_valid = min(len(utts) - 1, max(1, round(len(utts) * valid_ratio)))
        held = set(rng.permutation(len(utts))[:num_valid].tolist())
        for i, utt in enumerate(utts):
            (valid if i in held else train).append(utt)
    return train, valid


# ------------------------------------------------------------- test / trials
def duration_tag(seconds: float) -> str:
    """``2.0`` -> ``'2s'``, ``1.5`` -> ``'1.5s'`` (used in ids and file names)."""
    return f"{seconds:g}s"


def crop_rows(
    utts: Sequence[Utterance], seconds: float, rng: np.random.Generator, log: PrepLog
) -> List[ManifestRow]:
    """One ``seconds``-long crop per utterance, at a random (seeded) position.

    Crop ids are ``<utt_id>@<d>s``. Utterances shorter than ``seconds`` get
    no crop; their number is noted in ``log``.
    """
    length = int(round(seconds * SAMPLE_RATE))
    rows, short = [], 0
    for utt in utts:
        if utt.frames < length:
            short += 1
            continue
        start = int(rng.integers(0, utt.frames - length + 1))
        rows.append(utterance_row(utt, start, start + length, f"{utt.id}@{duration_tag(seconds)}"))
    if short:
        tag = duration_tag(seconds)
        log.note(f"{short} test utterances shorter than {seconds:g} s are left out of the {tag} condition")
    return rows


def make_trials(
    models: Dict[str, str], tests: Sequence[Tuple[str, str]], nontarget_ratio: float, rng: np.random.Generator
) -> List[Trial]:
    """Every target trial plus ``nontarget_ratio`` times as many non-target ones.

    Arguments
    ---------
    models : dict
        ``spk_id -> enroll_id``.
    tests : list of (test_id, spk_id)
    nontarget_ratio : float
        Non-target trials per target trial (1.0: balanced); capped by the
        number of distinct non-target pairs.
    rng : numpy.random.Generator

    Returns
    -------
    Sorted ``(enroll_id, test_id, label)`` tuples, label 1 = target.

    Example
    -------
    >>> trials = make_trials({"a": "a-e", "b": "b-e"}, [("a/1", "a"), ("b/1", "b")], 1.0, np.random.default_rng(0))
    >>> trials
    [('a-e', 'a/1', 1), ('a-e', 'b/1', 0), ('b-e', 'a/1', 0), ('b-e', 'b/1', 1)]
    """
    speakers = sorted(models)
    targets = [(models[spk], test_id, 1) for test_id, spk in tests if spk in models]
    total = len(speakers) * len(tests)
    wanted = min(round(nontarget_ratio * len(targets)), total - len(targets))
    picks = rng.choice(total, size=min(total, wanted + len(targets)), replace=False) if wanted > 0 else []
    nontargets = []
    for flat in picks:
        spk = speakers[flat // len(tests)]
        test_id, test_spk = tests[flat % len(tests)]
        if spk != test_spk and len(nontargets) < wanted:
            nontargets.append((models[spk], test_id, 0))
    return sorted(targets + nontargets)


def all_trials(models: Dict[str, str], tests: Sequence[Tuple[str, str]]) -> List[Trial]:
    """Every enrolment x test pair: ``len(models) * len(tests)`` trials, sorted.

    Example
    -------
    >>> all_trials({"a": "a-e", "b": "b-e"}, [("a/1", "a"), ("b/1", "b"), ("c/1", "c")])[:3]
    [('a-e', 'a/1', 1), ('a-e', 'b/1', 0), ('a-e', 'c/1', 0)]
    """
    return sorted((enroll_id, test_id, int(spk == test_spk))
                  for spk, enroll_id in models.items() for test_id, test_spk in tests)


# --------------------------------------------------------- skip_prep check
def is_prepared(save_folder: Path, outputs: Sequence[str], opts: dict) -> bool:
    """True if every output exists and ``prep_opts.json`` holds the same options.

    ``prep_opts.json`` is written last (:func:`finish`), so its presence
    means the previous run completed. Outputs that depend on the data (e.g.
    a trial list that is only written when it has both classes) are listed
    in ``prep_outputs.txt`` by :func:`finish` and must exist too.
    """
    opts_path = save_folder / OPTS_FILE
    listed = save_folder / OUTPUTS_FILE
    outputs = list(outputs) + (listed.read_text().split() if listed.is_file() else [])
    if not opts_path.is_file() or not all((save_folder / name).is_file() for name in outputs):
        return False
    try:
        return json.loads(opts_path.read_text()) == json.loads(json.dumps(opts))
    except ValueError:
        return False


def invalidate(save_folder: Path) -> None:
    """Remove ``prep_opts.json`` before writing outputs, so a run killed midway is redone."""
    save_folder.mkdir(parents=True, exist_ok=True)
    (save_folder / OPTS_FILE).unlink(missing_ok=True)
    (save_folder / OUTPUTS_FILE).unlink(missing_ok=True)


def finish(save_folder: Path, opts: dict, log: PrepLog, outputs: Sequence[str] = ()) -> None:
    """Write ``prep.log``, ``prep_outputs.txt`` (``outputs``, relative paths), then
    ``prep_opts.json`` (last: it marks the outputs as complete)."""
    log.write(save_folder)
    with atomic_write(save_folder / OUTPUTS_FILE) as f:
        f.writelines(f"{name}\n" for name in outputs)
    with atomic_write(save_folder / OPTS_FILE) as f:
        json.dump(opts, f, indent=2, sort_keys=True)


# ---------------------------------------------------------------------- CLI
def parse_durations(text: str) -> Tuple[float, ...]:
    """Parse ``"1,2,3"`` into positive seconds (argparse ``type``).

    Example
    -------
    >>> parse_durations("1,2.5")
    (1.0, 2.5)
    """
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated seconds such as 1,2,3, got {text!r}")
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"test durations must be > 0 s, got {text!r}")
    return values


def run_cli(parser: argparse.ArgumentParser, prepare: Callable[..., None], argv: Optional[List[str]] = None) -> None:
    """Parse arguments and run ``prepare``; bad options and bad data end in one line."""
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        prepare(**vars(args))
    except OptionError as e:
        parser.error(str(e))
    except PrepError as e:
        sys.exit(f"{parser.prog}: error: {e}")


# ------------------------------------------------------- corpus generators
# Shared by the built-in corpora (``synth_digits.py``: espeak-ng voices,
# ``recorded_voices.py``: recordings shipped by Debian packages).
CORPUS_FILE = ".corpus.json"
CORPUS_DOMAINS = ("target", "source")  # the index of a domain is part of every seed


class CorpusArgumentError(ValueError):
    """Raised for nonsense arguments or an output folder that holds something else."""


class MissingToolError(RuntimeError):
    """Raised when a program or a Debian package's data that a corpus needs is not installed."""


def domain_rng(seed: int, domain: str, *indices: int) -> np.random.Generator:
    """A generator that depends only on the seed, the domain and the indices.

    Example
    -------
    >>> float(domain_rng(1, "target", 2).random()) == float(domain_rng(1, "target", 2).random())
    True
    >>> float(domain_rng(1, "target", 2).random()) == float(domain_rng(1, "source", 2).random())
    False
    """
    return np.random.default_rng([seed, CORPUS_DOMAINS.index(domain), *indices])


def sox_float(inputs: Sequence[str], effects: Sequence[str] = (), stdin=None, what: str = "") -> np.ndarray:
    """Decode with sox to float32 samples at 16 kHz, mono, applying ``effects``.

    ``inputs`` are sox's input arguments (a file, or ``-t wav -`` for ``stdin``:
    a pipe or bytes); sox resamples and downmixes as needed. ``-R`` makes the
    output repeatable (no random dither). Raises ``RuntimeError`` naming
    ``what`` (or the input) with sox's message.
    """
    command = ["sox", "-R", "-V1", *inputs, "-t", "raw", "-e", "floating-point", "-b", "32",
               "-r", str(SAMPLE_RATE), "-c", "1", "-", *effects]
    piped = isinstance(stdin, bytes)
    result = subprocess.run(command, input=stdin if piped else None, stdin=None if piped else stdin,
                            capture_output=True)
    if result.returncode:
        raise RuntimeError(f"sox failed on {what or ' '.join(inputs)}: {result.stderr.decode().strip()}")
    return np.frombuffer(result.stdout, dtype=np.float32)


def float_wav_bytes(signal: np.ndarray) -> bytes:
    """``signal`` (16 kHz, mono) as a 32-bit float WAV file in memory (to pipe into sox)."""
    buffer = io.BytesIO()
    sf.write(buffer, np.asarray(signal, np.float32), SAMPLE_RATE, subtype="FLOAT", format="WAV")
    return buffer.getvalue()


def write_pcm16(path: Path, signal: np.ndarray) -> None:
    """Write ``signal`` (16 kHz, mono, in [-1, 1]) as a 16-bit PCM WAV file, atomically."""
    with atomic_write(path, "wb") as f:
        sf.write(f, np.asarray(signal, np.float32), SAMPLE_RATE, subtype="PCM_16", format="WAV")


def check_tools(tools: Sequence[str], hint: str) -> None:
    """Raise ``MissingToolError`` naming the programs missing from ``PATH`` and ``hint`` (what to install)."""
    missing = [tool for tool in tools if shutil.which(tool) is None]
    if missing:
        raise MissingToolError(f"{' and '.join(missing)} not found: {hint}")


def write_corpus_meta(folder: Path, meta: dict) -> None:
    """Write ``folder/.corpus.json`` atomically."""
    with atomic_write(folder / CORPUS_FILE) as f:
        json.dump(meta, f, indent=1)


def existing_corpus(folder: Path, arguments: dict) -> Optional[dict]:
    """The ``.corpus.json`` metadata of a complete corpus made with ``arguments``, else None.

    Raises ``CorpusArgumentError`` when ``folder`` holds something else: files
    but no ``.corpus.json``, or a corpus made with other arguments.
    """
    meta_path = folder / CORPUS_FILE
    if not meta_path.exists():
        if folder.exists() and any(not p.name.startswith(".") for p in folder.iterdir()):
            raise CorpusArgumentError(
                f"{folder} is not empty and holds no {CORPUS_FILE}; choose a new folder"
            )
        return None
    meta = json.loads(meta_path.read_text())
    if meta["arguments"] != arguments:
        differing = {k: v for k, v in meta["arguments"].items() if arguments.get(k) != v}
        raise CorpusArgumentError(
            f"{folder} holds a corpus made with other arguments ({differing}); "
            "choose a new folder or delete it"
        )
    complete = meta["complete"] and all((folder / f"{k}.wav").exists() for k in meta["utterances"])
    return meta if complete else None


def corpus_summary(folder: Path, meta: dict, seconds: float, reused: bool) -> dict:
    """The summary a corpus generator returns: counts, durations (s), total hours, wall time."""
    durations = [u["duration"] for u in meta["utterances"].values()]
    return {
        "output_folder": str(folder),
        "num_speakers": len(meta["speakers"]),
        "num_utterances": len(durations),
        "min_duration": min(durations),
        "max_duration": max(durations),
        "total_hours": sum(durations) / 3600.0,
        "seconds": seconds,
        "reused": reused,
    }


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are a single line (exit code 2)."""

    def error(self, message: str) -> None:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def run_corpus_cli(parser: argparse.ArgumentParser, make: Callable[..., dict],
                   argv: Optional[Sequence[str]] = None) -> dict:
    """Parse arguments and run a corpus generator ``make``; its errors end in one line.

    Bad arguments exit 2 (usage error), a missing tool or package exits 1.
    """
    args = vars(parser.parse_args(argv))
    try:
        return make(**args)
    except CorpusArgumentError as error:
        parser.error(str(error))
    except MissingToolError as error:
        sys.exit(f"{parser.prog}: error: {error}")
