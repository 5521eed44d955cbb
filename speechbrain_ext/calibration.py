"""The calibrated decision of a model: score -> log-likelihood-ratio maps, ``threshold.json`` and ``cohort.pt``.

**Calibration** (BOSARIS ``train_llr_fusion``, NIST SRE practice): a linear map fitted on the dev trials by
prior-weighted logistic regression turns a score ``s`` (cosine or AS-norm) into a log-likelihood ratio::

    llr = a * s + b + c * q          q = log(test duration, seconds)  (calibration_quality: duration)
                                     c = 0                            (calibration_quality: none)

    minimise  P/N_t sum_tar log(1 + e^-(llr + logit P)) + (1-P)/N_n sum_non log(1 + e^(llr + logit P))

with ``P`` the training prior (``calibration_prior``). The duration term lets 1 s and 3 s claims share one
threshold. **The decision** (:class:`Calibration`, the one function every front end calls: evaluation, the
``Verifier``, the CLI, ``load_verifier`` and the HTTP service)::

    mode llr:  accept iff llr >= log(c_fa (1 - P_t) / (c_miss P_t))      (Bayes threshold of the costs and prior)
    mode far:  accept iff s >= threshold                                  (target false-accept rate on dev)

``threshold.json`` (written by :func:`deploy` + :func:`write_threshold`, read by :func:`read_threshold`) keeps
``score`` (``cosine``/``asnorm``), ``threshold`` (the target-FAR score threshold), ``target_far``, ``dev_far``,
``test_far``, ... and adds ``calibration``: ``{"mode", "map": {"a", "b", "c", "quality"}, "prior", "p_target",
"c_miss", "c_fa", "llr_threshold", "fingerprint"}``. A file without that block (older format) loads in far
mode; a map fitted on another model (``fingerprint``) is refused, as a foreign cohort is. For ``asnorm``,
``cohort.pt`` (:func:`save_cohort`) goes beside it. Every error is a ``ModelError`` of one line naming the file.
"""
import json
import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from speechbrain_ext.builder import EMBEDDING_KEYS, ModelError
from speechbrain_ext.embeddings import fingerprint, speaker_means
from speechbrain_ext.io_utils import PathLike, atomic_write, write_json
from speechbrain_ext.manifest import read_manifest
from speechbrain_ext.metrics import (ArrayLike, bayes_threshold, eer, error_rates, normalised_dcf, system_metrics,
                                     threshold_at_far)
from speechbrain_ext.model_folder import COHORT_FILE, THRESHOLD_FILE
from speechbrain_ext.scoring import SCORE_KINDS, Scoring

logger = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 0.25  # SpeechBrain's verify_batch default, used only without threshold.json
MODES = ("llr", "far")
QUALITY_MEASURES = ("duration", "none")
MIN_TARGET_TRIALS = 50  # fewer dev target trials: no threshold is written
MIN_DEV_SPEAKERS, MIN_DEV_NONTARGETS = 20, 1000  # fewer: a one-line warning (the threshold is unreliable)


class CalibrationError(ValueError):
    """Calibration trials that cannot give a threshold (one class, too few targets); one line."""


def quality(durations: Optional[ArrayLike], n: int) -> np.ndarray:
    """``q = log(seconds)`` ``[n]`` of test durations (clipped at 0.1 s); zeros without durations."""
    if durations is None:
        return np.zeros(n)
    seconds = np.asarray(durations, dtype=np.float64).reshape(-1)
    if len(seconds) != n:
        raise ValueError(f"{len(seconds)} durations for {n} scores")
    return np.log(np.maximum(seconds, 0.1))


@dataclass(frozen=True)
class LinearLLR:
    """``llr = a * s + b + c * q`` (module docstring); ``quality`` names ``q`` (``duration`` or ``none``).

    >>> LinearLLR(10.0, -5.0, 1.0, "duration")(np.array([0.5, 0.5]), [1.0, math.e]).tolist()
    [0.0, 1.0]
    """

    a: float
    b: float
    c: float = 0.0
    quality: str = "none"

    def __call__(self, scores: ArrayLike, durations: Optional[ArrayLike] = None) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64).reshape(-1)
        q = quality(durations if self.quality == "duration" else None, len(scores))
        return self.a * scores + self.b + self.c * q


def _features(scores: np.ndarray, q: Optional[np.ndarray]) -> np.ndarray:
    """Design matrix ``[N, 2 or 3]``: score, (quality,) 1."""
    return np.stack([scores] + ([q] if q is not None else []) + [np.ones(len(scores))], axis=1)


def logistic_fit(x: np.ndarray, labels: np.ndarray, prior: float, ridge: float = 1e-6,
                 iterations: int = 100) -> np.ndarray:
    """Weights ``[F]`` minimising the prior-weighted logistic loss of ``x @ w`` (module docstring).

    Newton's method with step halving on standardised features (the loss is convex); ``ridge`` is a tiny L2
    penalty on the non-constant weights so that separable trials give large but finite weights. No sklearn:
    three parameters need no library.
    """
    mean, scale = x[:, :-1].mean(axis=0), x[:, :-1].std(axis=0)
    scale[scale == 0] = 1.0
    z = np.concatenate([(x[:, :-1] - mean) / scale, x[:, -1:]], axis=1)
    alpha = np.where(labels, prior / labels.sum(), (1 - prior) / (~labels).sum())  # [N] trial weights
    offset, sign = math.log(prior / (1 - prior)), np.where(labels, 1.0, -1.0)
    penalty = np.r_[np.full(z.shape[1] - 1, ridge), 0.0]

    def loss(w):
        return float(alpha @ np.logaddexp(0, -sign * (z @ w + offset)) + 0.5 * penalty @ w ** 2)

    w = np.zeros(z.shape[1])
    for _ in range(iterations):
        p = 1 / (1 + np.exp(-(z @ w + offset)))
        grad = z.T @ (alpha * (p - labels)) + penalty * w
        hess = (z * (alpha * p * (1 - p))[:, None]).T @ z + np.diag(penalty + 1e-12)
        step, current = np.linalg.solve(hess, grad), loss(w)
        t = 1.0
        while loss(w - t * step) > current and t > 1e-8:
            t /= 2
        w = w - t * step
        if np.abs(t * step).max() < 1e-10:
            break
    slope = w[:-1] / scale  # back to the raw features
    return np.r_[slope, w[-1] - slope @ mean]


def check_calibration_trials(labels: Sequence[int], min_targets: int = MIN_TARGET_TRIALS) -> None:
    """:class:`CalibrationError` for calibration trials of one class or with fewer than ``min_targets`` targets."""
    targets, total = int(np.sum(labels)), len(labels)
    if targets in (0, total):
        raise CalibrationError(f"its {total} trial(s) are all {'target' if targets else 'non-target'}")
    if targets < min_targets:
        raise CalibrationError(f"only {targets} target trial(s), at least {min_targets} needed")


def fit_llr(scores: ArrayLike, labels: ArrayLike, durations: Optional[ArrayLike] = None, quality_measure: str = "none",
            prior: float = 0.5, min_targets: int = MIN_TARGET_TRIALS) -> LinearLLR:
    """The :class:`LinearLLR` of dev trials (scores ``[N]``, labels ``[N]``, test durations ``[N]`` seconds).

    Raises :class:`CalibrationError` for one class or fewer than ``min_targets`` target trials.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> labels = np.r_[np.ones(2000), np.zeros(2000)]
    >>> m = fit_llr(rng.normal(labels, 1.0), labels)          # true llr = s - 0.5
    >>> bool(abs(m.a - 1) < 0.1 and abs(m.b + 0.5) < 0.1)
    True
    """
    if quality_measure not in QUALITY_MEASURES:
        raise ValueError(f"calibration_quality must be one of {', '.join(QUALITY_MEASURES)}, got {quality_measure!r}")
    if not 0 < prior < 1:
        raise ValueError(f"calibration prior must be in (0, 1), got {prior}")
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels).reshape(-1) == 1
    check_calibration_trials(labels, min_targets)
    q = quality(durations, len(scores)) if quality_measure == "duration" else None
    if q is not None and np.ptp(q) == 0:
        q = None  # one duration: c cannot be told from b
    w = logistic_fit(_features(scores, q), labels, prior)
    return LinearLLR(float(w[0]), float(w[-1]), float(w[1]) if q is not None else 0.0, quality_measure)


@dataclass(frozen=True)
class Calibration:
    """The deployed decision: ``mode`` llr (``llr_map`` and the Bayes threshold of ``p_target``, ``c_miss``,
    ``c_fa``) or far (``score >= threshold``). The one decision function of the project (module docstring).

    Example
    -------
    >>> cal = Calibration("llr", 0.5, LinearLLR(10.0, -5.0), p_target=0.5)   # llr_threshold 0
    >>> cal.accept([0.49, 0.5, 0.7]).tolist(), Calibration(threshold=0.6).accept([0.49, 0.5, 0.7]).tolist()
    ([False, True, True], [False, False, True])
    >>> cal.score_threshold().tolist()
    [0.5]
    """

    mode: str = "far"
    threshold: float = DEFAULT_THRESHOLD  # score threshold of far mode (target FAR on dev)
    llr_map: Optional[LinearLLR] = None
    p_target: float = 0.01
    c_miss: float = 1.0
    c_fa: float = 1.0

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"calibration mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.mode == "llr" and self.llr_map is None:
            raise ValueError("calibration mode llr needs a score -> llr map")

    @property
    def llr_threshold(self) -> float:
        """``log(c_fa (1 - p_target) / (c_miss p_target))``."""
        return bayes_threshold(self.p_target, self.c_miss, self.c_fa)

    def llr(self, scores: ArrayLike, durations: Optional[ArrayLike] = None) -> Optional[np.ndarray]:
        """LLRs ``[N]`` of scores ``[N]`` (test durations ``[N]``, seconds), None without a map."""
        return None if self.llr_map is None else self.llr_map(scores, durations)

    def accept(self, scores: ArrayLike, durations: Optional[ArrayLike] = None) -> np.ndarray:
        """Decisions ``[N]`` (bool) on scores ``[N]``: ``llr >= llr_threshold`` or ``score >= threshold``."""
        if self.mode == "llr":
            return self.llr_map(scores, durations) >= self.llr_threshold
        return np.asarray(scores, dtype=np.float64).reshape(-1) >= self.threshold

    def score_threshold(self, durations: Optional[ArrayLike] = None) -> np.ndarray:
        """The score threshold ``[N]`` the decision amounts to for each test duration (far: ``threshold``;
        llr: ``(llr_threshold - b - c q) / a``), so that ``accept == score >= score_threshold`` (a > 0)."""
        n = 1 if durations is None else len(np.asarray(durations).reshape(-1))
        if self.mode == "far":
            return np.full(n, float(self.threshold))
        m = self.llr_map
        return (self.llr_threshold - m.b - m.c * quality(durations if m.quality == "duration" else None, n)) / m.a

    def with_threshold(self, threshold: float) -> "Calibration":
        """Far mode at a given score threshold (the CLI's ``--threshold``), the map kept for the llr."""
        return replace(self, mode="far", threshold=float(threshold))

    def block(self, model_fingerprint: str, prior: float) -> dict:
        """The ``calibration`` block of ``threshold.json``."""
        m = self.llr_map
        return {"mode": self.mode, "map": None if m is None else {"a": m.a, "b": m.b, "c": m.c, "quality": m.quality},
                "prior": prior, "p_target": self.p_target, "c_miss": self.c_miss, "c_fa": self.c_fa,
                "llr_threshold": self.llr_threshold, "fingerprint": model_fingerprint}


# ------------------------------------------------------------------ reading threshold.json and cohort.pt
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


def model_fingerprint(modules: Mapping[str, torch.nn.Module]) -> str:
    """``embeddings.fingerprint`` of a model's embedding modules (what cohorts and llr maps are stamped with)."""
    return fingerprint({k: modules[k] for k in EMBEDDING_KEYS})


def _refuse_foreign(path: PathLike, made_by: object, modules: Mapping[str, torch.nn.Module]) -> None:
    this = model_fingerprint(modules)
    if made_by != this:
        raise ModelError(f"{path}: made with another model (fingerprint {str(made_by)[:12]}, this model {this[:12]})")


def calibration_of(threshold: dict, path: PathLike, modules: Mapping[str, torch.nn.Module]) -> Calibration:
    """The :class:`Calibration` of a parsed ``threshold.json``: far mode without a ``calibration`` block (older
    files); with one, refused unless fitted on ``modules``' weights, or malformed."""
    block = threshold.get("calibration")
    if block is None:
        return Calibration("far", float(threshold["threshold"]))
    _refuse_foreign(path, block.get("fingerprint") if isinstance(block, dict) else None, modules)
    try:
        m = block["map"]
        llr_map = None if m is None else LinearLLR(float(m["a"]), float(m["b"]), float(m["c"]), str(m["quality"]))
        calibration = Calibration(block["mode"], float(threshold["threshold"]), llr_map, float(block["p_target"]),
                                  float(block["c_miss"]), float(block["c_fa"]))
    except (KeyError, TypeError, ValueError) as err:
        raise ModelError(f"{path}: malformed calibration block ({type(err).__name__}: {err})") from None
    if llr_map is not None and not (llr_map.a > 0 and llr_map.quality in QUALITY_MEASURES):
        raise ModelError(f"{path}: calibration map needs a > 0 and quality in {QUALITY_MEASURES}, got {m}")
    return calibration


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
    _refuse_foreign(path, made_by, modules)
    return cohort, top_n


def read_threshold(path: PathLike, modules: Mapping[str, torch.nn.Module]
                   ) -> Tuple[dict, Calibration, Optional[Path]]:
    """``(content, calibration, cohort file or None)`` of a ``threshold.json``, every part checked against
    ``modules`` (the cohort of an asnorm file must exist and be made with them)."""
    threshold = read_json(path, "threshold file")
    kind = check_threshold(threshold, path)
    calibration, cohort_file = calibration_of(threshold, path, modules), None
    if kind == "asnorm":
        cohort_file = Path(path).parent / threshold.get("cohort_file", COHORT_FILE)
        read_cohort(cohort_file, modules)
    return threshold, calibration, cohort_file


def load_scoring(folder: Path, modules: Mapping[str, torch.nn.Module]) -> Tuple[Scoring, Calibration]:
    """The scoring and decision a model folder was calibrated with.

    ``threshold.json`` names the score (``cosine`` when it does not say); for ``asnorm``, ``cohort.pt`` must be
    there and made with the loaded ``modules``, as must the llr map. Without ``threshold.json``: cosine and
    SpeechBrain's 0.25 (far mode), with a warning.
    """
    path = folder / THRESHOLD_FILE
    if not path.is_file():
        logger.warning("%s: no threshold.json; using SpeechBrain's default threshold %s", folder, DEFAULT_THRESHOLD)
        return Scoring(), Calibration()
    _, calibration, cohort_file = read_threshold(path, modules)
    if cohort_file is None:
        return Scoring(), calibration
    cohort, top_n = read_cohort(cohort_file, modules)
    return Scoring("asnorm", cohort, top_n), calibration


def write_threshold(path: PathLike, threshold: dict) -> None:
    """Write a ``threshold.json`` atomically (what the CLI cannot apply is refused on reading, by
    :func:`check_threshold`: evaluation may calibrate e.g. concatenated enrolment for its own report)."""
    write_json(path, threshold)


def set_asnorm_threshold(folder: PathLike, threshold: float) -> None:
    """Make a model folder decide on AS-norm scores at a score ``threshold`` (far mode): other entries of its
    ``threshold.json`` are kept, its ``calibration`` block (fitted on other scores) dropped."""
    path = Path(folder) / THRESHOLD_FILE
    previous = read_json(path, "threshold file") if path.is_file() else {}
    previous.pop("calibration", None)
    write_threshold(path, {**previous, "threshold": float(threshold), "score": "asnorm", "cohort_file": COHORT_FILE})


# ------------------------------------------------------------------ calibrating on the dev split
@dataclass
class DevTrials:
    """The calibration material of one score: the full-length dev list (``scores``/``labels`` ``[N]``, for
    the target-FAR threshold) and every dev list pooled (``pooled_*`` ``[M]``, durations in seconds, for the map)."""

    scores: np.ndarray
    labels: np.ndarray
    pooled_scores: np.ndarray
    pooled_labels: np.ndarray
    pooled_durations: np.ndarray


def calibrate(dev: DevTrials, hp: dict, fingerprint_: str) -> Tuple[Calibration, dict]:
    """Fit one score's decision on its dev trials: the target-FAR threshold (``threshold_rule``: far or eer)
    and the llr map (``calibration_quality``, ``calibration_prior``); returns it and its threshold.json entries.

    ``CalibrationError`` when the full-length dev list has one class or fewer than ``min_target_trials`` targets.
    """
    check_calibration_trials(dev.labels, hp["min_target_trials"])
    if hp["threshold_rule"] == "far":
        threshold, rule = threshold_at_far(dev.scores, dev.labels, hp["target_far"]), f"FAR <= {hp['target_far']:g}"
    elif hp["threshold_rule"] == "eer":
        threshold, rule = eer(dev.scores, dev.labels)[1], "EER"
    else:
        raise ValueError(f"threshold_rule must be 'far' or 'eer', got {hp['threshold_rule']!r}")
    llr_map = fit_llr(dev.pooled_scores, dev.pooled_labels, dev.pooled_durations, hp["calibration_quality"],
                      hp["calibration_prior"], min_targets=1)
    calibration = Calibration(hp["calibration_mode"], threshold, llr_map, hp["p_target"], hp["c_miss"], hp["c_fa"])
    far, frr = error_rates(dev.scores, dev.labels, threshold)
    dev_metrics = system_metrics(dev.pooled_scores, dev.pooled_labels,
                                 decisions={"deployed": calibration.accept(dev.pooled_scores, dev.pooled_durations)})
    deployed_dcf = normalised_dcf(dev_metrics["far_deployed"], dev_metrics["frr_deployed"], hp["p_target"],
                                  hp["c_miss"], hp["c_fa"])
    record = {"threshold": threshold, "method": rule, "target_far": hp["target_far"], "dev_far": far,
              "dev_frr": frr, "num_calibration_trials": len(dev.labels), "dev_act_dcf": float(deployed_dcf),
              "calibration": calibration.block(fingerprint_, hp["calibration_prior"])}
    return calibration, record


def deploy(dev: Mapping[str, DevTrials], hp: dict, fingerprint_: str) -> Tuple[str, Dict[str, Calibration], dict]:
    """``(deployed score, {score: Calibration}, threshold.json content)`` from the dev trials of each score.

    ``deploy_score`` ``auto`` takes the score with the lower dev actual DCF of its deployed decision at the
    deployment prior ``p_target`` (cosine on ties, it needs no cohort); ``cosine``/``asnorm`` force one. Every
    score gets its own map, so each condition reports its calibration.
    """
    wanted = hp["deploy_score"]
    if wanted not in ("auto", *dev):
        raise ValueError(f"deploy_score must be auto, cosine or asnorm (asnorm needs a cohort: cohort_csv="
                         f"{hp.get('cohort_csv')}), got {wanted!r}")
    fitted = {kind: calibrate(trials, hp, fingerprint_) for kind, trials in dev.items()}
    candidates = [kind for kind in fitted if wanted in ("auto", kind)]
    kind = min(candidates, key=lambda k: (fitted[k][1]["dev_act_dcf"], k != "cosine"))
    record = {**fitted[kind][1], "score": kind, "enroll_mode": hp["enroll_mode"], "subtract_mean": hp["subtract_mean"]}
    return kind, {k: c for k, (c, _) in fitted.items()}, record


def calibration_material(hp: dict) -> Tuple[Path, Path, Path, Dict[str, Path]]:
    """``(folder, enroll_csv, test_csv, {condition: trial list})`` to calibrate on: the dev split, else the
    evaluated list (with a warning, as its FAR is then not a measurement). ``full`` is ``trials.txt``."""
    folder = Path(hp["calibration_folder"]) if hp.get("calibration_folder") else None
    evaluated = Path(hp["eval_folder"])
    if folder is None or not (folder / "trials.txt").is_file():
        logger.warning("no dev split (%s/trials.txt): calibrating on the evaluated trials %s, so the FAR "
                       "at the threshold is not a measurement", folder, evaluated / "trials.txt")
        folder = evaluated
    elif folder.resolve() == evaluated.resolve():
        logger.warning("calibration_folder is the evaluated folder %s: the FAR at the threshold is not "
                       "a measurement", folder)
    lists = {"full": folder / "trials.txt", **{p.stem.split("_", 1)[1]: p for p in sorted(folder.glob("trials_*s.txt"))}}
    return folder, folder / "enroll.csv", folder / "test.csv", lists


def warn_if_few(trials_path: Path, labels: Sequence[int], test_speakers: int) -> None:
    """One warning line when the dev split is too small for a trustworthy threshold."""
    nontargets = len(labels) - int(np.sum(labels))
    if test_speakers < MIN_DEV_SPEAKERS or nontargets < MIN_DEV_NONTARGETS:
        logger.warning("%s: %d dev speakers and %d non-target trials (want >= %d and >= %d): the threshold and "
                       "its FAR are loose", trials_path, test_speakers, nontargets, MIN_DEV_SPEAKERS,
                       MIN_DEV_NONTARGETS)


def load_cohort(hp: dict, extractor, cache: Path):
    """Cohort speaker means ``[C, D]`` and mean embedding ``[D]``, or ``(None, None)``."""
    path = hp.get("cohort_csv")
    if not path or not Path(path).is_file() or not read_manifest(path):
        if hp["subtract_mean"]:
            raise ValueError(f"subtract_mean needs a training manifest, cohort_csv={path} has no rows")
        logger.warning("no cohort manifest (%s): AS-norm conditions skipped", path)
        return None, None
    speakers, means, mean = speaker_means(path, extractor, hp["cohort_max_speakers"],
                                          hp["cohort_utts_per_speaker"], cache)
    if len(speakers) < 2:
        logger.warning("cohort has %d speaker(s): AS-norm conditions skipped", len(speakers))
        return None, mean
    return means, mean
