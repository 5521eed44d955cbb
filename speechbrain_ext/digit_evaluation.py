"""Evaluation of the digit recogniser on the test speakers: digit error rate and string accuracy by duration.

Conditions are those of the speaker evaluation: ``full`` (the whole test files, reference = their ``wrd``) and
each crop length of ``test.csv`` (rows ``<utt>@<d>s``). What a crop says is not in the manifest, so its
reference comes from the full file: the recogniser's CTC log-probabilities of the whole file are force-aligned
to its transcript (``torchaudio.functional.forced_align``, the Viterbi path through the known tokens), and a
digit belongs to a crop when the centre of its aligned span lies inside the crop. The timing comes from the
model; the digits themselves come from the transcript. Each condition gets :func:`digits.digit_metrics` (the
speaker-bootstrap intervals of the verification results) under ``results.json["digits"][condition]``.
"""
import logging
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torchaudio.functional as taf
from tqdm import tqdm

from speechbrain_ext.audio import read_row
from speechbrain_ext.digits import DIGITS_FOLDER, DigitRecognizer, digit_metrics, load_recognizer, normalise_digits
from speechbrain_ext.io_utils import PathLike
from speechbrain_ext.manifest import ManifestRow, read_manifest
from speechbrain_ext.metrics import interval_text

logger = logging.getLogger(__name__)


def recognizer_for(model_folder: PathLike, digits_model: Optional[PathLike], work_folder: PathLike
                   ) -> Optional[DigitRecognizer]:
    """The recogniser to evaluate: ``digits_model`` when given, else the ``digits/`` of ``model_folder``.

    ``digits_model`` may be a model folder holding ``digits/``, an exported ``digits/`` folder itself, or the
    save folder of a recogniser training run, which is exported first into ``<work_folder>/digits``
    (``export.export_digits``). None when there is none.
    """
    if digits_model is None:
        return load_recognizer(model_folder)
    path = Path(digits_model)
    if not path.is_dir():
        raise FileNotFoundError(f"digits_model={digits_model}: no such folder")
    if (path / DIGITS_FOLDER).is_dir():
        return load_recognizer(path)
    if path.name == DIGITS_FOLDER and (path / "hyperparams.yaml").is_file():
        return load_recognizer(path.parent)
    from speechbrain_ext.export import export_digits  # export imports the Brains; only needed here

    export_digits(path, Path(work_folder) / DIGITS_FOLDER)
    return load_recognizer(work_folder)


def digit_spans(recognizer: DigitRecognizer, log_probs: torch.Tensor, wrd: str, num_samples: int
                ) -> Optional[List[float]]:
    """Sample position of the centre of each digit of ``wrd`` in the signal: CTC forced alignment of the
    log-probabilities ``[T', V]`` to the tokens of ``wrd``; None when the frames cannot hold them."""
    tokens = recognizer.tokenizer.encode_as_ids(wrd)
    blank = recognizer.decoding_function.keywords.get("blank_id", 0)
    try:
        path, scores = taf.forced_align(log_probs[None].float().cpu(), torch.tensor([tokens]), blank=blank)
    except RuntimeError:  # more tokens (with repeats) than frames
        return None
    spans = taf.merge_tokens(path[0], scores[0].exp(), blank=blank)
    if len(spans) != len(tokens):
        return None
    hop = num_samples / log_probs.shape[0]
    return [(span.start + span.end) / 2 * hop for span in spans]


def crop_reference(wrd: str, centres: Sequence[float], start: int, stop: int) -> str:
    """The digits of ``wrd`` whose aligned centre (samples) lies in ``[start, stop)``.

    Example
    -------
    >>> crop_reference("4711", [1000.0, 9000.0, 17000.0, 25000.0], 8000, 24000)
    '71'
    """
    return "".join(d for d, c in zip(wrd, centres) if start <= c < stop)


def _decode(recognizer: DigitRecognizer, log_probs: torch.Tensor) -> List[str]:
    """Greedy digit strings of log-probabilities ``[B, T', V]`` (equal lengths)."""
    decoded = recognizer.decoding_function(log_probs, torch.ones(log_probs.shape[0], device=log_probs.device))
    return [normalise_digits(recognizer.tokenizer.decode_ids(ids)) or "" for ids in decoded]


def _encode(recognizer: DigitRecognizer, wavs: torch.Tensor) -> torch.Tensor:
    """Log-probabilities ``[B, T', V]`` of equal-length waveforms ``[B, T]``."""
    with torch.no_grad():
        return recognizer.encode_batch(wavs, torch.ones(wavs.shape[0]))


def transcribe_test_set(recognizer: DigitRecognizer, rows: Sequence[ManifestRow], batch_size: int = 32
                        ) -> Dict[str, Tuple[List[str], List[str], List[str]]]:
    """``{condition: (references, hypotheses, speakers)}`` of the test rows (see the module docstring).

    Whole files one at a time (no padding, as at the door); crops of one length in batches (equal lengths).
    A file without ``wrd`` is left out with its crops; one whose alignment fails loses only its crops.
    """
    full = {row.id: row for row in rows if "@" not in row.id and row.wrd}
    out: Dict[str, Tuple[List[str], List[str], List[str]]] = {"full": ([], [], [])}
    centres: Dict[str, List[float]] = {}
    for row in tqdm(full.values(), desc="digits: full files", unit="file", mininterval=1.0, disable=None):
        wav = torch.from_numpy(read_row(row.wav, row.start, row.stop))
        log_probs = _encode(recognizer, wav[None])
        for value, column in zip((row.wrd, _decode(recognizer, log_probs)[0], row.spk_id), out["full"]):
            column.append(value)
        found = digit_spans(recognizer, log_probs[0], row.wrd, row.stop - row.start)
        if found is not None:
            centres[row.id] = found
    unaligned = len(full) - len(centres)
    if unaligned:
        logger.warning("digits: %d of %d test files could not be aligned to their transcript: their crops are "
                       "left out", unaligned, len(full))
    by_tag: Dict[str, List[ManifestRow]] = {}
    for row in rows:
        if "@" in row.id and row.id.split("@")[0] in centres:
            by_tag.setdefault(row.id.split("@")[1], []).append(row)
    for tag in sorted(by_tag, key=lambda t: float(t.rstrip("s"))):
        refs, hyps, spks = out.setdefault(tag, ([], [], []))
        crops = sorted(by_tag[tag], key=lambda r: r.stop - r.start)
        for i in tqdm(range(0, len(crops), batch_size), desc=f"digits: {tag} crops", mininterval=1.0, disable=None):
            batch = crops[i:i + batch_size]
            for length in sorted({r.stop - r.start for r in batch}):
                same = [r for r in batch if r.stop - r.start == length]
                wavs = torch.stack([torch.from_numpy(read_row(r.wav, r.start, r.stop)) for r in same])
                hyps.extend(_decode(recognizer, _encode(recognizer, wavs)))
                for r in same:
                    source = full[r.id.split("@")[0]]
                    refs.append(crop_reference(source.wrd, centres[source.id], r.start - source.start,
                                               r.stop - source.start))
                    spks.append(r.spk_id)
    # a crop with no digit centre inside has an empty reference: what the recogniser hears there are errors
    return {tag: cols for tag, cols in out.items() if cols[0]}


def evaluate_digits(model_folder: PathLike, digits_model: Optional[PathLike], test_csv: PathLike,
                    output_folder: PathLike, bootstrap_resamples: int = 500, seed: int = 0
                    ) -> Optional[Dict[str, Dict[str, object]]]:
    """``results.json["digits"]``: :func:`digits.digit_metrics` of each condition, or None when there is no
    recogniser (:func:`recognizer_for`) or the test manifest has no transcripts (a warning says so)."""
    recognizer = recognizer_for(model_folder, digits_model, output_folder)
    if recognizer is None:
        return None
    rows = read_manifest(test_csv)
    if not any(row.wrd for row in rows):
        logger.warning("%s has no transcripts (wrd): the digit recogniser is not evaluated", test_csv)
        return None
    conditions = transcribe_test_set(recognizer, rows)
    ordered = [tag for tag in conditions if tag != "full"] + ["full"]
    return {tag: digit_metrics(*conditions[tag], num_resamples=bootstrap_resamples, seed=seed) for tag in ordered}


def digits_table(digits: Dict[str, Dict[str, object]]) -> str:
    """Markdown table: digit error rate and string accuracy (%) by condition, with 95 % CIs."""
    lines = ["| condition | utterances | digits | DER (%) [95% CI] | string accuracy (%) [95% CI] |",
             "|---|---:|---:|---:|---:|"]
    lines += [f"| {tag} | {r['num_utterances']} | {r['num_digits']} | {interval_text(r['der'], r.get('der_ci'), 100)} "
              f"| {interval_text(r['string_accuracy'], r.get('string_accuracy_ci'), 100)} |"
              for tag, r in digits.items()]
    return "\n".join(lines)
