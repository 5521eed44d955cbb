"""Prepare a speaker-folder corpus, ``<root>/<speaker>/<utt>.{wav,flac}``.

Speakers are split (seeded) into training, test and (optionally) dev
speakers, which never overlap:

- ``train.csv`` / ``valid.csv``: files of training speakers, a few per
  speaker held out for speaker-ID validation; short files concatenated
  within speaker up to ``min_duration``, long ones chunked at ``max_duration``.
- ``enroll.csv``: one row per test speaker, ``wav`` listing ``enroll_utts``
  of its files (``;``-joined; the embedding stage averages or concatenates).
- ``test.csv``: the other files of test speakers, whole (id ``<utt_id>``)
  and as one seeded crop per test duration (id ``<utt_id>@<d>s``).
- ``trials.txt`` (whole files) and ``trials_<d>s.txt``: every target trial
  and ``nontarget_ratio`` times as many non-target ones, or every enrolment
  x test pair (``all_pairs``); the crop lists use the same pairs, less those
  whose test file is shorter than ``d``. A crop list left with one class
  only (or no trial) is not written, and ``prep.log`` says so.
- ``wrd`` (every manifest, when the corpus has transcripts): the digits said in
  a whole file (or a ``;``-joined row of them), read from ``<root>/transcripts.tsv``
  or ``<utt>.txt`` beside the audio (``data_prep.common.read_transcripts``);
  empty for chunks and crops, and for a file whose transcript is not a digit
  string (a counted skip in ``prep.log``: not for recogniser training).
- ``dev/``: the same enrol/test/trial files for the dev speakers
  (``dev_ratio`` or ``num_dev_speakers``), for choosing hyperparameters and
  calibrating thresholds without touching the test speakers.

With no test speakers (``num_test_speakers=0``, a pre-training corpus) the
enrol/test manifests are written with their header only and the trial lists
empty, so every run leaves the same set of files.

Speakers with too few files for enrolment plus test (a single file, or at
most ``enroll_utts``) are used for training only; a single-file speaker also
gets no validation file. Each such speaker is noted in ``prep.log``.

Usage: ``python data_prep/folder_prepare.py --data_folder ROOT --save_folder OUT``.

Example: 5 speakers of 4 files (1-2.5 s), 2 of them held out for test.

>>> import tempfile, numpy as np, soundfile as sf
>>> from pathlib import Path
>>> from speechbrain_ext.manifest import read_manifest, read_trials
>>> corpus, out = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
>>> for spk, utt in [(s, u) for s in "abcde" for u in range(4)]:
...     (corpus / spk).mkdir(exist_ok=True)
...     sf.write(corpus / spk / f"{utt}.wav", np.full(16000 + 8000 * utt, 0.1, "float32"), 16000)
>>> prepare_folder(str(corpus), str(out), seed=1, num_test_speakers=2, enroll_utts=2, test_durations=(2.0,),
...                all_pairs=True, min_duration=0, num_workers=1)
>>> sorted({row.spk_id for row in read_manifest(out / "train.csv")})
['b', 'c', 'd']
>>> [row.id for row in read_manifest(out / "test.csv")]  # whole files, then 2 s crops of those long enough
['a/2', 'a/3', 'e/1', 'e/2', 'a/2@2s', 'a/3@2s', 'e/2@2s']
>>> read_trials(out / "trials_2s.txt")[:3]
[('a-enroll', 'a/2@2s', 1), ('a-enroll', 'a/3@2s', 1), ('a-enroll', 'e/2@2s', 0)]
"""
import argparse
import inspect
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from data_prep.common import (
    PrepError,
    OptionError,
    PrepLog,
    Utterance,
    check_durations,
    crop_rows,
    duration_tag,
    finish,
    invalidate,
    is_prepared,
    joined_row,
    list_audio,
    all_trials,
    make_trials,
    parse_durations,
    read_transcripts,
    run_cli,
    sanitize_id,
    scan_audio,
    split_valid,
    training_rows,
    transcripts_fingerprint,
    utterance_row,
)
from speechbrain_ext.manifest import ManifestRow, write_manifest, write_trials

logger = logging.getLogger(__name__)


TEST_FILES = ["enroll.csv", "test.csv", "trials.txt"]
DEV_FOLDER = "dev"


def output_names(with_dev: bool = False) -> List[str]:
    """Files always written by :func:`prepare_folder` (besides logs and per-duration lists).

    Example
    -------
    >>> output_names(with_dev=True)[-1]
    'dev/trials.txt'
    """
    names = ["train.csv", "valid.csv"] + TEST_FILES
    return names + [f"{DEV_FOLDER}/{name}" for name in TEST_FILES] * with_dev


def prepare_folder(
    data_folder: str,
    save_folder: str,
    seed: int = 1234,
    test_durations: Sequence[float] = (1.0, 2.0, 3.0),
    num_test_speakers: Optional[int] = None,
    test_ratio: float = 0.2,
    num_dev_speakers: Optional[int] = None,
    dev_ratio: float = 0.0,
    all_pairs: bool = False,
    valid_ratio: float = 0.1,
    enroll_utts: int = 3,
    nontarget_ratio: float = 1.0,
    min_duration: float = 5.0,
    max_duration: float = 10.0,
    num_workers: int = 2,
    skip_prep: bool = False,
) -> None:
    """Write train/valid/enroll/test manifests and trial lists for a speaker-folder corpus.

    Arguments
    ---------
    data_folder : str
        Root holding one folder per speaker with ``.wav``/``.flac`` files (any depth).
    save_folder : str
        Output folder.
    seed : int
        Seed of every random choice (speaker split, held-out, enrolment, crops, trials).
    test_durations : sequence of float
        Crop lengths in seconds of the short test conditions.
    num_test_speakers : int, optional
        Number of test speakers; ``None`` uses ``test_ratio``; ``0`` writes
        no test material (pre-training corpus).
    test_ratio : float
        Fraction of speakers used for test when ``num_test_speakers`` is None.
    num_dev_speakers : int, optional
        Number of dev speakers; ``None`` uses ``dev_ratio``.
    dev_ratio : float
        Fraction of speakers used for dev when ``num_dev_speakers`` is None.
    all_pairs : bool
        Write every enrolment x test pair instead of sampling non-targets.
    valid_ratio : float
        Fraction of each training speaker's files held out for validation.
    enroll_utts : int
        Files per enrolment model.
    nontarget_ratio : float
        Non-target trials per target trial (1.0: balanced).
    min_duration : float
        Training files shorter than this (s) are concatenated within speaker; 0: off.
    max_duration : float
        Training files longer than this (s) are cut into chunks; 0: off.
    num_workers : int
        Processes reading audio headers.
    skip_prep : bool
        If True, do nothing.
    """
    if skip_prep:
        return
    opts = _check_options(locals())
    save = Path(save_folder)
    wants_dev = bool(num_dev_speakers) or (num_dev_speakers is None and dev_ratio > 0)
    if is_prepared(save, output_names(wants_dev), opts):
        logger.info("%s already prepared with these options, skipping", save)
        return
    log = PrepLog()
    by_speaker = _scan(Path(data_folder), log, num_workers)
    invalidate(save)
    _split_and_write(save, by_speaker, opts, log)
    finish(save, opts, log, [p.relative_to(save).as_posix() for p in sorted(save.glob("**/trials_*.txt"))])


def _split_and_write(save: Path, by_speaker: Dict[str, List[Utterance]], opts: dict, log: PrepLog) -> None:
    """Split the speakers, write the training manifests and each held-out split's test material.

    ``opts`` are :func:`prepare_folder`'s options as :func:`_check_options` returns them.
    """
    rng = np.random.default_rng(opts["seed"])
    wanted = {"test": _wanted(opts["num_test_speakers"], opts["test_ratio"], len(by_speaker)),
              "dev": _wanted(opts["num_dev_speakers"], opts["dev_ratio"], len(by_speaker))}
    held_out = _choose_held_out_speakers(by_speaker, wanted, opts["enroll_utts"], rng, log)
    train, valid = split_valid({s: u for s, u in by_speaker.items()
                                if not any(s in spk for spk in held_out.values())}, opts["valid_ratio"], rng)
    for name, utts in (("train.csv", train), ("valid.csv", valid)):
        write_manifest(save / name, training_rows(utts, opts["min_duration"], opts["max_duration"]))
    counts = []
    for split, folder in (("test", save), ("dev", save / DEV_FOLDER)):
        if split == "dev" and not held_out["dev"]:
            continue
        enroll, tests = _enroll_and_test({s: by_speaker[s] for s in held_out[split]}, opts["enroll_utts"], rng)
        _write_test_material(folder, enroll, tests, opts["test_durations"], opts["nontarget_ratio"],
                             opts["all_pairs"], rng, log)
        counts.append(f"{len(held_out[split])} {split} speakers ({len(tests)} test files)")
    training_speakers = len(by_speaker) - sum(len(s) for s in held_out.values())
    log.note(f"{training_speakers} training speakers ({len(train)} train, {len(valid)} valid files), "
             + ", ".join(counts))


def _check_options(args: dict) -> dict:
    """Validate the options; return them (JSON-ready) for ``prep_opts.json``."""
    check_durations(args["min_duration"], args["max_duration"])
    if args["num_test_speakers"] is not None and args["num_test_speakers"] < 0:
        raise OptionError("num_test_speakers must be >= 0")
    if args["num_dev_speakers"] is not None and args["num_dev_speakers"] < 0:
        raise OptionError("num_dev_speakers must be >= 0")
    for name in ("test_ratio", "valid_ratio", "dev_ratio"):
        if not 0 <= args[name] < 1:
            raise OptionError(f"{name} must be in [0, 1), got {args[name]}")
    if args["enroll_utts"] < 1:
        raise OptionError("enroll_utts must be >= 1")
    if args["nontarget_ratio"] < 0:
        raise OptionError("nontarget_ratio must be >= 0")
    if any(d <= 0 for d in args["test_durations"]):
        raise OptionError("test_durations must be > 0 s")
    opts = {k: v for k, v in args.items() if k not in ("skip_prep", "num_workers", "save_folder")}
    opts["data_folder"] = str(Path(args["data_folder"]).resolve())
    opts["test_durations"] = [float(d) for d in args["test_durations"]]
    transcripts = transcripts_fingerprint(Path(args["data_folder"]))
    if transcripts is not None:  # only then: folders prepared before transcripts existed stay prepared
        opts["transcripts_sha1"] = transcripts
    return {"prepare": "folder", **opts}


def _scan(root: Path, log: PrepLog, num_workers: int) -> Dict[str, List[Utterance]]:
    """Scan ``root/<speaker>/...``; return valid utterances by speaker."""
    if not root.is_dir():
        raise PrepError(f"data folder not found: {root}")
    found = list_audio(root)
    files = [p for p in found if len(p.relative_to(root).parts) > 1]
    if not files:
        raise PrepError(f"no .wav/.flac files in speaker folders under {root}")
    if len(files) < len(found):
        log.note(f"{len(found) - len(files)} audio files directly under {root} ignored: not in a speaker folder")
    frames = scan_audio([str(p.resolve()) for p in files], log, num_workers, desc=f"scan {root.name}")
    digits = read_transcripts(root, [p for p in files if str(p.resolve()) in frames], log)
    by_speaker: Dict[str, List[Utterance]] = {}
    seen: Dict[str, str] = {}
    for p in files:
        path = str(p.resolve())
        if path in frames:
            rel = p.relative_to(root)
            spk = sanitize_id(rel.parts[0])
            utt_id = sanitize_id(rel.with_suffix("").as_posix())
            if utt_id in seen:
                raise PrepError(f"two files give the utterance id {utt_id}: {seen[utt_id]} and {path}")
            seen[utt_id] = path
            by_speaker.setdefault(spk, []).append(Utterance(utt_id, path, frames[path], spk,
                                                            wrd=digits.get(path, "")))
    if not by_speaker:
        raise PrepError(f"no usable audio under {root} — see the skip summary")
    return by_speaker


def _wanted(number: Optional[int], ratio: float, num_speakers: int) -> int:
    """Speakers wanted for a held-out split: ``number``, else ``round(ratio * num_speakers)``."""
    return round(ratio * num_speakers) if number is None else number


def _choose_held_out_speakers(
    by_speaker: Dict[str, List[Utterance]],
    wanted: Dict[str, int],
    enroll_utts: int,
    rng: np.random.Generator,
    log: PrepLog,
) -> Dict[str, List[str]]:
    """Pick disjoint held-out speaker sets (``{"test": n, "dev": m}``) among those
    with more than ``enroll_utts`` files; the test set is drawn first, so adding
    a dev split leaves the test speakers of a seed unchanged."""
    eligible = []
    for spk in sorted(by_speaker):
        count = len(by_speaker[spk])
        if count == 1:
            log.note(f"speaker {spk} has a single file: it cannot be split, so it is used for training only")
        elif count <= enroll_utts:
            log.note(f"speaker {spk} has {count} files (<= enroll_utts={enroll_utts}): used for training only")
        else:
            eligible.append(spk)
    total = sum(wanted.values())
    counts = ", ".join(f"{n} {split}" for split, n in wanted.items() if n)
    if total > len(eligible):
        raise PrepError(
            f"{counts} speakers requested but only {len(eligible)} of the {len(by_speaker)} speakers under "
            f"the data folder have more than enroll_utts={enroll_utts} files"
        )
    if total >= len(by_speaker) and total:
        raise PrepError(f"{counts} speakers requested of {len(by_speaker)}: no speaker would be left for training")
    order = [eligible[i] for i in rng.permutation(len(eligible))]
    chosen, start = {}, 0
    for split, n in wanted.items():
        chosen[split] = sorted(order[start:start + n])
        start += n
    return chosen


def _enroll_and_test(
    test_speakers: Dict[str, List[Utterance]], enroll_utts: int, rng: np.random.Generator
) -> Tuple[List[ManifestRow], List[Utterance]]:
    """Pick ``enroll_utts`` files per test speaker for enrolment; the rest are tests."""
    enroll, tests = [], []
    for spk in sorted(test_speakers):
        utts = sorted(test_speakers[spk], key=lambda u: u.id)
        chosen = set(rng.permutation(len(utts))[:enroll_utts].tolist())
        picked = [u for i, u in enumerate(utts) if i in chosen]
        tests.extend(u for i, u in enumerate(utts) if i not in chosen)
        enroll.append(joined_row(f"{spk}-enroll", picked, spk))
    return enroll, tests


def _write_test_material(
    save: Path,
    enroll: List[ManifestRow],
    tests: List[Utterance],
    test_durations: Sequence[float],
    nontarget_ratio: float,
    all_pairs: bool,
    rng: np.random.Generator,
    log: PrepLog,
) -> None:
    """Write ``enroll.csv``, ``test.csv`` (full + crops), ``trials.txt`` and ``trials_<d>s.txt``.

    A crop list with trials of one class only is not written (evaluation
    could not score it); ``log`` notes it. An empty one is written empty.
    """
    models = {row.spk_id: row.id for row in enroll}
    tested = [(u.id, u.spk_id) for u in tests]
    trials = all_trials(models, tested) if all_pairs else make_trials(models, tested, nontarget_ratio, rng)
    test_rows = [utterance_row(u) for u in tests]
    crop_lists = []
    for seconds in test_durations:
        crops = crop_rows(tests, seconds, rng, log)
        kept = {row.id for row in crops}
        tag = duration_tag(seconds)
        crop_lists.append((tag, [(e, f"{t}@{tag}", y) for e, t, y in trials if f"{t}@{tag}" in kept]))
        test_rows.extend(crops)
    save.mkdir(parents=True, exist_ok=True)
    write_manifest(save / "enroll.csv", enroll)
    write_manifest(save / "test.csv", test_rows)
    write_trials(save / "trials.txt", trials)
    for tag, crop_trials in crop_lists:
        classes = {y for _, _, y in crop_trials}
        if len(classes) == 1:
            log.note(f"{save / f'trials_{tag}.txt'} not written: its {len(crop_trials)} trial(s) "
                     f"are all {'target' if 1 in classes else 'non-target'}")
            (save / f"trials_{tag}.txt").unlink(missing_ok=True)
            continue
        write_trials(save / f"trials_{tag}.txt", crop_trials)


def build_parser(description: str, defaults: dict) -> argparse.ArgumentParser:
    """The CLI of :func:`prepare_folder`, with the given defaults (shared with SHAL)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_folder", required=True, help="root with one folder per speaker")
    p.add_argument("--save_folder", required=True, help="output folder for manifests and trials")
    p.add_argument("--seed", type=int, default=defaults["seed"])
    p.add_argument("--test_durations", type=parse_durations, default=defaults["test_durations"],
                   help="comma-separated test crop lengths, seconds")
    p.add_argument("--num_test_speakers", type=int, default=defaults["num_test_speakers"],
                   help="test speakers (0: none, pre-training corpus); default: test_ratio of speakers")
    p.add_argument("--test_ratio", type=float, default=defaults["test_ratio"])
    p.add_argument("--num_dev_speakers", type=int, default=defaults["num_dev_speakers"],
                   help="dev speakers (hyperparameter choice, calibration); default: dev_ratio of speakers")
    p.add_argument("--dev_ratio", type=float, default=defaults["dev_ratio"])
    p.add_argument("--all_pairs", action="store_true", help="every enrolment x test pair as a trial")
    p.add_argument("--valid_ratio", type=float, default=defaults["valid_ratio"],
                   help="fraction of each training speaker's files held out")
    p.add_argument("--enroll_utts", type=int, default=defaults["enroll_utts"], help="files per enrolment")
    p.add_argument("--nontarget_ratio", type=float, default=defaults["nontarget_ratio"],
                   help="non-target trials per target trial")
    p.add_argument("--min_duration", type=float, default=defaults["min_duration"],
                   help="concatenate shorter training files, seconds (0: off)")
    p.add_argument("--max_duration", type=float, default=defaults["max_duration"],
                   help="chunk longer training files, seconds (0: off)")
    p.add_argument("--num_workers", type=int, default=defaults["num_workers"])
    return p


def folder_defaults() -> dict:
    """Defaults of :func:`prepare_folder` as a dict (for CLIs and wrappers)."""
    params = inspect.signature(prepare_folder).parameters.values()
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


if __name__ == "__main__":
    run_cli(build_parser(__doc__.splitlines()[0], folder_defaults()), prepare_folder)
