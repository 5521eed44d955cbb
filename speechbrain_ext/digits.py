"""Spoken digit strings: normalising them, scoring a recogniser, and the exported recogniser itself.

- :func:`normalise_digits` (from ``speechbrain_ext.manifest``, where the manifests' ``wrd`` column is defined,
  so that data preparation uses it without importing torch): Mandarin or ASCII digits -> ``"0"``-``"9"``.
- :func:`digit_errors`: edit distance between two digit strings; :func:`digit_metrics`: the digit error rate
  and string accuracy of a set of utterances with speaker-bootstrap intervals
  (``speechbrain_ext.metrics.speaker_weights``, the resampling of the verification CIs)::

      DER = sum_u errors(ref_u, hyp_u) / sum_u len(ref_u)       string accuracy = mean_u [hyp_u == ref_u]

- :class:`DigitRecognizer` (SpeechBrain's ``EncoderASR`` with digit-string results) and :func:`load_recognizer`,
  which loads the ``digits/`` folder of an exported model (``speechbrain_ext.export.export_digits``) offline.
"""
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
from speechbrain.inference.ASR import EncoderASR
from speechbrain.utils.edit_distance import count_ops, op_table
from speechbrain.utils.fetching import FetchConfig

from speechbrain_ext.audio import read_file
from speechbrain_ext.io_utils import PathLike
from speechbrain_ext.manifest import normalise_digits
from speechbrain_ext.metrics import percentile_ci, speaker_weights

__all__ = ["DIGITS_FOLDER", "DigitRecognizer", "digit_errors", "digit_error_rate", "digit_metrics",
           "load_recognizer", "normalise_digits"]

DIGITS_FOLDER = "digits"  # the recogniser's folder inside an exported model folder
RECOGNIZER_FILES = ("hyperparams.yaml", "encoder.ckpt", "tokenizer.ckpt")


def digit_errors(ref: str, hyp: str) -> int:
    """Digit edits (substitutions + deletions + insertions) turning ``ref`` into ``hyp`` (Levenshtein distance,
    SpeechBrain's ``edit_distance``).

    Example
    -------
    >>> digit_errors("123456", "123456"), digit_errors("123456", "12456"), digit_errors("123", "1293")
    (0, 1, 1)
    >>> digit_errors("12", "")
    2
    """
    ops = count_ops(op_table(list(ref), list(hyp)))
    return int(ops["insertions"] + ops["deletions"] + ops["substitutions"])


def digit_error_rate(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """``sum errors / sum len(ref)`` over utterances (reference strings must not all be empty).

    Example
    -------
    >>> digit_error_rate(["1234", "56"], ["1234", "5"])
    0.16666666666666666
    """
    total = sum(len(r) for r in refs)
    if not total:
        raise ValueError("digit error rate: the references hold no digit")
    return sum(digit_errors(r, h) for r, h in zip(refs, hyps)) / total


def digit_metrics(refs: Sequence[str], hyps: Sequence[str], speakers: Sequence[str], num_resamples: int = 500,
                  seed: int = 0, confidence: float = 0.95) -> Dict[str, object]:
    """Digit error rate and string accuracy of utterances ``[U]``, with speaker-bootstrap intervals.

    Each resample draws the speakers with replacement (``metrics.speaker_weights``); an utterance weighs as
    often as its speaker was drawn, in both sums of the DER and in the accuracy's mean. No interval with fewer
    than 2 speakers or ``num_resamples`` 0.

    Example
    -------
    >>> m = digit_metrics(["12", "34", "56", "78"], ["12", "34", "5", "78"], ["a", "a", "b", "b"], num_resamples=50)
    >>> m["der"], m["string_accuracy"], m["num_utterances"], m["der_ci"][0] <= m["der"] <= m["der_ci"][1]
    (0.125, 0.75, 4, True)
    """
    if not len(refs) == len(hyps) == len(speakers):
        raise ValueError(f"{len(refs)} references, {len(hyps)} hypotheses and {len(speakers)} speakers differ")
    errors = np.array([digit_errors(r, h) for r, h in zip(refs, hyps)], dtype=float)  # [U]
    lengths = np.array([len(r) for r in refs], dtype=float)  # [U]
    correct = np.array([r == h for r, h in zip(refs, hyps)], dtype=float)  # [U]
    if not lengths.sum():
        raise ValueError("digit metrics: the references hold no digit")
    result = {"der": float(errors.sum() / lengths.sum()), "string_accuracy": float(correct.mean()),
              "num_utterances": len(refs), "num_digits": int(lengths.sum()), "num_speakers": len(set(speakers))}
    if num_resamples and len(set(speakers)) >= 2:
        der, acc = [], []
        for w in speaker_weights(np.asarray(speakers), num_resamples, seed):  # [U] per resample
            der.append((w * errors).sum() / (w * lengths).sum() if (w * lengths).sum() else np.nan)
            acc.append((w * correct).sum() / w.sum())
        result.update(der_ci=list(percentile_ci(der, confidence)),
                      string_accuracy_ci=list(percentile_ci(acc, confidence)))
    return result


class DigitRecognizer(EncoderASR):
    """SpeechBrain's ``EncoderASR`` whose transcriptions are digit strings (:func:`normalise_digits`; ``""`` when
    the recogniser heard no digit). Loaded by :func:`load_recognizer`.
    """

    def transcribe(self, wav: torch.Tensor) -> str:
        """The digits said in one waveform ``[T]`` (float, 16 kHz)."""
        words, _ = self.transcribe_batch(wav.reshape(1, -1).float(), torch.ones(1))
        return normalise_digits(words[0]) or ""

    def transcribe_file(self, path: PathLike, **kwargs) -> str:
        """The digits said in a 16 kHz mono file (``audio.AudioError``, one line, for anything else)."""
        return self.transcribe(torch.from_numpy(read_file(str(path))))


def load_recognizer(model_folder: PathLike, savedir: Optional[PathLike] = None) -> Optional[DigitRecognizer]:
    """The digit recogniser of an exported model folder (``<model_folder>/digits/``), loaded offline; None when
    the folder has no ``digits/``.

    ``from_hparams`` would take a path that does not exist for a hub id, so the folder and its files are checked
    here (``FileNotFoundError`` naming what is missing) and the network is not allowed. ``savedir``, where
    SpeechBrain links the files, defaults to a new temporary folder, as ``inference.load_verifier`` does.
    """
    folder = Path(model_folder).absolute() / DIGITS_FOLDER
    if not folder.is_dir():
        return None
    missing = [name for name in RECOGNIZER_FILES if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: digit recogniser folder is missing {', '.join(missing)}")
    savedir = Path(savedir) if savedir is not None else Path(tempfile.mkdtemp(prefix="sbext_digits_"))
    return DigitRecognizer.from_hparams(source=str(folder), savedir=str(savedir),
                                        fetch_config=FetchConfig(allow_network=False, overwrite=True))
