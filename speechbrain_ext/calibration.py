"""The calibrated score of a model folder: ``threshold.json`` and ``cohort.pt``.

``recipes/evaluate.py`` calibrates a threshold for one score and writes ``threshold.json`` (the score,
``cosine`` or ``asnorm``, the threshold, the target and measured FAR) and, for ``asnorm``, ``cohort.pt``
(:func:`save_cohort`). Export ships both and the access-control front end scores with the
:class:`~speechbrain_ext.scoring.Scoring` they name (:func:`load_scoring`), so the threshold applies to the
score it was measured on. Every error is a ``ModelError`` of one line naming the file.
"""
import json
import logging
from pathlib import Path
from typing import Mapping, Optional, Tuple

import torch

from speechbrain_ext.builder import EMBEDDING_KEYS, ModelError
from speechbrain_ext.embeddings import fingerprint
from speechbrain_ext.io_utils import atomic_write
from speechbrain_ext.manifest import PathLike
from speechbrain_ext.scoring import SCORE_KINDS, Scoring

logger = logging.getLogger(__name__)

THRESHOLD_FILE = "threshold.json"
COHORT_FILE = "cohort.pt"
DEFAULT_THRESHOLD = 0.25  # SpeechBrain's verify_batch default, used only without threshold.json


def read_json(path: Optional[PathLike], what: str) -> Optional[dict]:
    """Parse an optional JSON file, with a one-line error."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ModelError(f"{path}: cannot read the {what} ({err})") from None


def check_threshold(threshold: dict, path: PathLike) -> str:
    """The score kind of a ``threshold.json``, after checking that the CLI can apply it.

    Refused: no numeric threshold, an unknown score, or a score the access-control CLI does not compute (mean
    subtraction, enrolment by concatenated audio).
    """
    if not isinstance(threshold.get("threshold"), (int, float)):
        raise ModelError(f"{path}: no numeric 'threshold' entry")
    kind = threshold.get("score", "cosine")
    if kind not in SCORE_KINDS:
        raise ModelError(f"{path}: score {kind!r} is not one of {', '.join(SCORE_KINDS)}")
    if threshold.get("subtract_mean"):
        raise ModelError(f"{path}: calibrated on mean-subtracted scores, which the CLI does not compute; "
                         "evaluate with subtract_mean: False")
    if threshold.get("enroll_mode", "average") != "average":
        raise ModelError(f"{path}: calibrated with enroll_mode={threshold['enroll_mode']}, but the CLI enrols "
                         "file by file (average)")
    return kind


def save_cohort(path: PathLike, embeddings: torch.Tensor, top_n: int, model_fingerprint: str) -> None:
    """Write an AS-norm cohort file atomically: ``{"embeddings": [C, D] float32, "top_n": int, "fingerprint": str}``,
    the fingerprint (``embeddings.fingerprint``) naming the model whose embeddings these are."""
    cohort = torch.as_tensor(embeddings, dtype=torch.float32)
    if cohort.dim() != 2 or len(cohort) < 2 or not torch.isfinite(cohort).all():
        raise ValueError(f"cohort must be a finite [C, D] matrix with C >= 2, got shape {tuple(cohort.shape)}")
    if top_n < 2:
        raise ValueError(f"top_n must be >= 2, got {top_n}")
    with atomic_write(path, "wb") as f:
        torch.save({"embeddings": cohort, "top_n": int(top_n), "fingerprint": model_fingerprint}, f)


def read_cohort(path: PathLike, modules: Mapping[str, torch.nn.Module]) -> Tuple[torch.Tensor, int]:
    """Cohort ``[C, D]`` and ``top_n`` of a cohort file, refused unless made with ``modules``' weights."""
    model_fingerprint = fingerprint({k: modules[k] for k in EMBEDDING_KEYS})
    dim = modules["classifier"].weight.shape[1]
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        cohort, top_n, made_by = saved["embeddings"], int(saved["top_n"]), saved["fingerprint"]
    except FileNotFoundError:
        raise ModelError(f"{path}: no such cohort file (threshold.json is for asnorm scores)") from None
    except Exception as err:  # noqa: BLE001 -- any unreadable or foreign file: one line
        raise ModelError(f"{path}: not a cohort file ({type(err).__name__}: {err})") from None
    if cohort.dim() != 2 or cohort.shape[1] != dim:
        raise ModelError(f"{path}: cohort embeddings of shape {tuple(cohort.shape)}, the model's have dimension {dim}")
    if made_by != model_fingerprint:
        raise ModelError(f"{path}: made with another model (fingerprint {str(made_by)[:12]}, "
                         f"this model {model_fingerprint[:12]})")
    return cohort, top_n


def load_scoring(folder: Path, modules: Mapping[str, torch.nn.Module]) -> Tuple[Scoring, float]:
    """The scoring and threshold a model folder was calibrated with.

    ``threshold.json`` names the score (``cosine`` when it does not say); for ``asnorm``, ``cohort.pt`` must be
    there and made with the loaded ``modules``. Without ``threshold.json``: cosine and SpeechBrain's 0.25,
    with a warning.
    """
    path = folder / THRESHOLD_FILE
    if not path.is_file():
        logger.warning("%s: no threshold.json; using SpeechBrain's default threshold %s", folder, DEFAULT_THRESHOLD)
        return Scoring(), DEFAULT_THRESHOLD
    threshold = read_json(path, "threshold file")
    if check_threshold(threshold, path) == "cosine":
        return Scoring(), float(threshold["threshold"])
    cohort, top_n = read_cohort(folder / threshold.get("cohort_file", COHORT_FILE), modules)
    return Scoring("asnorm", cohort, top_n), float(threshold["threshold"])
