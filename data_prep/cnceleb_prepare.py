"""Prepare CN-Celeb1 and/or CN-Celeb2 (OpenSLR 82, the ``*_flac`` v2 release).

Expected layout::

    CN-Celeb_flac/data/<spk>/<genre>-<session>-<utt>.flac
    CN-Celeb_flac/dev/dev.lst                 training speakers, one id a line
    CN-Celeb_flac/eval/enroll/<spk>-enroll.flac
    CN-Celeb_flac/eval/test/<spk>-<genre>-<session>-<utt>.flac
    CN-Celeb_flac/eval/lists/enroll.lst       id00800-enroll enroll/id00800-enroll.wav
    CN-Celeb_flac/eval/lists/enroll.map       id00800-enroll id00800/<utt>.wav ...  (under data/)
    CN-Celeb_flac/eval/lists/trials.lst       id00800-enroll test/id00800-singing-01-005.wav 1
    CN-Celeb2_flac/data/<spk>/...flac, CN-Celeb2_flac/spk.lst

The lists name ``.wav`` files while the release ships ``.flac``: a listed
path is looked up as written, then with ``.flac``.

Outputs in ``save_folder``: ``train.csv``/``valid.csv`` (training speakers;
a few files per speaker held out; short files concatenated within speaker
and genre, long ones chunked), ``enroll.csv`` (one row per model, id as in
``trials.lst``), ``test.csv`` (id: file name without extension),
``trials.txt`` (``enroll_id test_id target|nontarget``), all with a
``genre`` column (empty for enrolment rows).

Usage: ``python data_prep/cnceleb_prepare.py --data_folder CN-Celeb_flac
[--cnceleb2_folder CN-Celeb2_flac] --save_folder OUT``.
"""
import argparse
import logging
import os
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from data_prep.common import (
    AUDIO_SUFFIXES,
    OptionError,
    PrepError,
    PrepLog,
    Utterance,
    check_durations,
    finish,
    invalidate,
    is_prepared,
    run_cli,
    scan_audio,
    split_valid,
    training_rows,
    utterance_row,
)
from speechbrain_ext.manifest import ManifestRow, Trial, write_manifest, write_trials

logger = logging.getLogger(__name__)

OUTPUTS = ["train.csv", "valid.csv", "enroll.csv", "test.csv", "trials.txt"]
ENROLL_MODES = ("concat", "avg")


def prepare_cnceleb(
    data_folder: str,
    save_folder: str,
    cnceleb2_folder: Optional[str] = None,
    use_cnceleb1_dev: bool = True,
    enroll_mode: str = "concat",
    valid_ratio: float = 0.02,
    min_duration: float = 5.0,
    max_duration: float = 10.0,
    seed: int = 1234,
    num_workers: int = 2,
    skip_prep: bool = False,
) -> None:
    """Write CN-Celeb train/valid/enroll/test manifests and ``trials.txt``.

    Arguments
    ---------
    data_folder : str
        ``CN-Celeb_flac`` (CN-Celeb1: evaluation set, and training speakers of ``dev/dev.lst``).
    save_folder : str
        Output folder.
    cnceleb2_folder : str, optional
        ``CN-Celeb2_flac``; its ``spk.lst`` speakers are added to training.
    use_cnceleb1_dev : bool
        Train on CN-Celeb1 ``dev.lst`` speakers (False: CN-Celeb2 only).
    enroll_mode : str
        ``"concat"``: the official concatenated ``eval/enroll`` file per model;
        ``"avg"``: the ``enroll.map`` utterances as a ``;``-list (to average embeddings).
    valid_ratio : float
        Fraction of each training speaker's files held out for validation.
    min_duration : float
        Training files shorter than this (s) are concatenated within speaker and genre; 0: off.
    max_duration : float
        Training files longer than this (s) are cut into chunks; 0: off.
    seed : int
        Seed of the validation hold-out.
    num_workers : int
        Processes reading audio headers.
    skip_prep : bool
        If True, do nothing.

    Example
    -------
    A folder that is not a CN-Celeb1 release is refused before any file is read:

    >>> import tempfile
    >>> prepare_cnceleb(tempfile.mkdtemp(), tempfile.mkdtemp())  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    data_prep.common.PrepError: not a CN-Celeb1 folder (expected data/ and eval/ inside): /...
    """
    if skip_prep:
        return
    opts = _check_options(locals())
    save = Path(save_folder)
    if is_prepared(save, OUTPUTS, opts):
        logger.info("%s already prepared with these options, skipping", save)
        return
    root = _check_layout(Path(data_folder), use_cnceleb1_dev, enroll_mode)
    train_files = _training_files(root, Path(cnceleb2_folder) if cnceleb2_folder else None, use_cnceleb1_dev)
    trials = _read_trials(root)
    models = _read_enrollment(root, enroll_mode, set(trials.enroll_ids))
    test_files = sorted(set(trials.test_paths))
    invalidate(save)
    log = PrepLog()
    paths = [p for _, p in train_files] + test_files + sorted({p for ps in models.values() for p in ps})
    frames = scan_audio(paths, log, num_workers, desc="scan CN-Celeb")
    by_speaker = _training_utterances(train_files, frames)
    train, valid = split_valid(by_speaker, valid_ratio, np.random.default_rng(seed))
    write_manifest(save / "train.csv", training_rows(train, min_duration, max_duration), with_genre=True)
    write_manifest(save / "valid.csv", training_rows(valid, min_duration, max_duration), with_genre=True)
    enroll_rows = _enroll_rows(models, frames, log)
    test_rows = [utterance_row(_test_utterance(p, frames[p])) for p in test_files if p in frames]
    write_manifest(save / "enroll.csv", enroll_rows, with_genre=True)
    write_manifest(save / "test.csv", test_rows, with_genre=True)
    write_trials(save / "trials.txt", _usable_trials(trials, enroll_rows, test_rows, log))
    log.note(f"{len(by_speaker)} training speakers ({len(train)} train, {len(valid)} valid files)")
    finish(save, opts, log)


def _check_options(args: dict) -> dict:
    """Validate the options; return them (JSON-ready) for ``prep_opts.json``."""
    check_durations(args["min_duration"], args["max_duration"])
    if args["enroll_mode"] not in ENROLL_MODES:
        raise OptionError(f"enroll_mode must be one of {ENROLL_MODES}, got {args['enroll_mode']!r}")
    if not 0 <= args["valid_ratio"] < 1:
        raise OptionError(f"valid_ratio must be in [0, 1), got {args['valid_ratio']}")
    if not args["use_cnceleb1_dev"] and not args["cnceleb2_folder"]:
        raise OptionError("no training data: give cnceleb2_folder or use_cnceleb1_dev")
    opts = {k: v for k, v in args.items() if k not in ("skip_prep", "num_workers", "save_folder")}
    for key in ("data_folder", "cnceleb2_folder"):
        opts[key] = str(Path(args[key]).resolve()) if args[key] else None
    return {"prepare": "cnceleb", **opts}


def _check_layout(root: Path, use_dev: bool, enroll_mode: str) -> Path:
    """Fail with one line naming the path unless ``root`` is a CN-Celeb1 release."""
    if not root.is_dir():
        raise PrepError(f"data folder not found: {root}")
    if not (root / "data").is_dir() or not (root / "eval").is_dir():
        raise PrepError(f"not a CN-Celeb1 folder (expected data/ and eval/ inside): {root}")
    lists = root / "eval" / "lists"
    needed = [lists / "trials.lst", lists / ("enroll.lst" if enroll_mode == "concat" else "enroll.map")]
    for path in needed + [root / "dev" / "dev.lst"] * use_dev:
        if not path.is_file():
            raise PrepError(f"missing CN-Celeb list file: {path}")
    return root.resolve()


def _read_list(path: Path) -> List[Tuple[int, List[str]]]:
    """Non-empty lines of a list file as ``(line number, fields)``."""
    with open(path, encoding="utf-8") as f:
        return [(n, line.split()) for n, line in enumerate(f, 1) if line.strip()]


def _resolve(bases: Sequence[Path], listed: str, list_file: Path, lineno: int) -> str:
    """The file a list names, under the first base that has it: as written, else with ``.flac``."""
    for base in bases:
        for candidate in (base / listed, (base / listed).with_suffix(".flac")):
            if candidate.is_file():
                return str(candidate)
    path = bases[0] / listed
    raise PrepError(f"{list_file}:{lineno}: file not found: {path} (nor {path.with_suffix('.flac').name})")


def _speaker_files(corpus: Path, spk_list: Path) -> List[Tuple[str, str]]:
    """``(spk, path)`` of the audio of each speaker listed in ``spk_list``."""
    if not spk_list.is_file():
        raise PrepError(f"missing speaker list: {spk_list}")
    files = []
    for lineno, fields in _read_list(spk_list):
        spk = fields[0].strip("/")
        folder = corpus / "data" / spk
        if not folder.is_dir():
            raise PrepError(f"{spk_list}:{lineno}: speaker folder not found: {folder}")
        with os.scandir(folder) as it:
            names = sorted(e.name for e in it if e.name.lower().endswith(AUDIO_SUFFIXES))
        files.extend((spk, str(folder / name)) for name in names)
    return files


def _training_files(root: Path, cn2: Optional[Path], use_dev: bool) -> List[Tuple[str, str]]:
    """``(spk, path)`` of every training file (CN-Celeb1 dev and/or CN-Celeb2)."""
    files = _speaker_files(root, root / "dev" / "dev.lst") if use_dev else []
    if cn2 is not None:
        if not (cn2 / "data").is_dir():
            raise PrepError(f"not a CN-Celeb2 folder (expected data/ and spk.lst inside): {cn2}")
        files += _speaker_files(cn2.resolve(), cn2 / "spk.lst")
    if not files:
        raise PrepError(f"no training audio found for the listed speakers under {root}")
    return files


@dataclass
class TrialList:
    """``trials.lst`` held compactly (3.5 M lines): names once, pairs as index arrays."""

    enroll_ids: List[str]
    test_paths: List[str]
    enroll: np.ndarray
    test: np.ndarray
    target: np.ndarray


def _read_trials(root: Path) -> TrialList:
    """Read ``trials.lst``; every test file it names must exist (as ``.wav`` or ``.flac``)."""
    path = root / "eval" / "lists" / "trials.lst"
    enroll_index: Dict[str, int] = {}
    test_index: Dict[str, int] = {}
    tests: List[str] = []
    enroll, test, target = array("i"), array("i"), bytearray()
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            fields = line.split()
            if len(fields) != 3 or fields[2] not in ("0", "1"):
                if not fields:
                    continue
                raise PrepError(f"{path}:{lineno}: expected 'enroll_id test/<file>.wav 0|1', got {line.strip()!r}")
            if fields[1] not in test_index:
                test_index[fields[1]] = len(tests)
                tests.append(_resolve([root / "eval"], fields[1], path, lineno))
            enroll.append(enroll_index.setdefault(fields[0], len(enroll_index)))
            test.append(test_index[fields[1]])
            target.append(fields[2] == "1")
    if not target:
        raise PrepError(f"empty trial list: {path}")
    return TrialList(list(enroll_index), tests, np.array(enroll), np.array(test), np.frombuffer(target, np.uint8))


def _read_enrollment(root: Path, enroll_mode: str, needed: set) -> Dict[str, Tuple[str, ...]]:
    """``enroll_id -> files``: the official concatenated file, or the ``enroll.map`` utterances."""
    lists = root / "eval" / "lists"
    path = lists / ("enroll.lst" if enroll_mode == "concat" else "enroll.map")
    bases = [root / "eval"] if enroll_mode == "concat" else [root / "data", root]
    models: Dict[str, Tuple[str, ...]] = {}
    for lineno, fields in _read_list(path):
        if len(fields) < 2:
            raise PrepError(f"{path}:{lineno}: expected 'enroll_id <file> ...', got {' '.join(fields)!r}")
        files = tuple(_resolve(bases, f, path, lineno) for f in fields[1:])
        models[fields[0]] = models.get(fields[0], ()) + files
    missing = sorted(needed - set(models))
    if missing:
        raise PrepError(f"{path}: {len(missing)} enrolment ids of trials.lst are not listed, e.g. {missing[0]}")
    return models


def _training_utterances(files: Sequence[Tuple[str, str]], frames: Dict[str, int]) -> Dict[str, List[Utterance]]:
    """Usable training files by speaker; genre from ``<genre>-<session>-<utt>``."""
    by_speaker: Dict[str, List[Utterance]] = {}
    for spk, path in files:
        if path in frames:
            stem = Path(path).stem
            utt = Utterance(f"{spk}/{stem}", path, frames[path], spk, stem.split("-")[0])
            by_speaker.setdefault(spk, []).append(utt)
    return by_speaker


def _test_utterance(path: str, frames: int) -> Utterance:
    """A test file ``<spk>-<genre>-<session>-<utt>``: id is the name without extension."""
    stem = Path(path).stem
    parts = stem.split("-")
    return Utterance(stem, path, frames, parts[0], parts[1] if len(parts) > 1 else "")


def _enroll_rows(models: Dict[str, Tuple[str, ...]], frames: Dict[str, int], log: PrepLog) -> List[ManifestRow]:
    """One row per model; a model with a skipped file is left out (noted)."""
    rows = []
    for enroll_id in sorted(models):
        files = models[enroll_id]
        if not all(p in frames for p in files):
            log.note(f"enrolment {enroll_id} left out: one of its files was skipped")
            continue
        spk = enroll_id[: -len("-enroll")] if enroll_id.endswith("-enroll") else enroll_id
        rows.append(ManifestRow(enroll_id, ";".join(files), 0, sum(frames[p] for p in files), spk))
    return rows


def _usable_trials(trials: TrialList, enroll: Sequence[ManifestRow], tests: Sequence[ManifestRow],
                   log: PrepLog) -> Iterator[Trial]:
    """Trials with ids of ``enroll.csv``/``test.csv``; those naming a skipped file are dropped (noted)."""
    models = {row.id for row in enroll}
    test_ids = {row.wav: row.id for row in tests}
    enroll_ok = np.array([e in models for e in trials.enroll_ids])
    test_ok = np.array([t in test_ids for t in trials.test_paths])
    keep = enroll_ok[trials.enroll] & test_ok[trials.test]
    if not keep.all():
        log.note(f"{int((~keep).sum())} trials dropped: they name a skipped file")
    test_names = [test_ids.get(t, "") for t in trials.test_paths]
    pairs = zip(trials.enroll[keep].tolist(), trials.test[keep].tolist(), trials.target[keep].tolist())
    return ((trials.enroll_ids[e], test_names[t], y) for e, t, y in pairs)


def build_parser() -> argparse.ArgumentParser:
    """The CLI of :func:`prepare_cnceleb`."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--data_folder", required=True, help="CN-Celeb_flac (CN-Celeb1 v2 release)")
    p.add_argument("--save_folder", required=True, help="output folder for manifests and trials")
    p.add_argument("--cnceleb2_folder", default=None, help="CN-Celeb2_flac, added to training")
    p.add_argument("--use_cnceleb1_dev", action=argparse.BooleanOptionalAction, default=True,
                   help="train on the CN-Celeb1 dev.lst speakers")
    p.add_argument("--enroll_mode", choices=ENROLL_MODES, default="concat",
                   help="concat: official enroll files; avg: enroll.map utterances as a ;-list")
    p.add_argument("--valid_ratio", type=float, default=0.02,
                   help="fraction of each training speaker's files held out")
    p.add_argument("--min_duration", type=float, default=5.0,
                   help="concatenate shorter training files within speaker and genre, seconds (0: off)")
    p.add_argument("--max_duration", type=float, default=10.0,
                   help="chunk longer training files, seconds (0: off)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--num_workers", type=int, default=2)
    return p


if __name__ == "__main__":
    run_cli(build_parser(), prepare_cnceleb)
