"""Verification metrics computed by sorting: EER, normalised minDCF, DET curve,
and speaker-level bootstrap confidence intervals (plain and paired).

Every function sorts the ``N`` trial scores once (``O(N log N)`` time, ``O(N)`` memory), so CN-Celeb's 3.5 M
trials take seconds; SpeechBrain's ``metric_stats.minDCF`` builds a ``[2N, N]`` matrix instead and runs out of
memory there (SpeechBrain issue #1387).

A trial is **accepted when ``score >= threshold``**. For a threshold ``t``::

    FRR(t) = #{targets with score <  t} / #targets         (miss rate, FNR)
    FAR(t) = #{non-targets with score >= t} / #non-targets (false alarms, FPR)

The operating points are the thresholds ``t`` = each of the ``U`` distinct scores (ascending; the smallest
accepts every trial) plus ``t = +inf``, which rejects every trial. A threshold returned here is used as is
with ``score >= threshold``, e.g. in :func:`error_rates`.

``scores`` and ``labels`` (1 = target, 0 = non-target) are 1-D numpy arrays, sequences or torch tensors of
equal length ``[N]``; bad input raises a ``ValueError`` with one line saying what is wrong.
"""
from typing import Dict, Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]


def _as_numpy(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a 1-D numpy array (tensors are detached and moved to CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {x.shape}")
    return x


def _check_trials(scores: ArrayLike, labels: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """Validated float64 scores ``[N]`` and boolean target mask ``[N]``."""
    scores = _as_numpy(scores, "scores")
    labels = _as_numpy(labels, "labels")
    if len(scores) != len(labels):
        raise ValueError(f"scores and labels differ in length: {len(scores)} vs {len(labels)}")
    if len(scores) == 0:
        raise ValueError("no trials: scores and labels are empty")
    if not (np.issubdtype(scores.dtype, np.number) and not np.iscomplexobj(scores)):
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    bad = ~np.isfinite(scores)
    if bad.any():
        raise ValueError(f"scores contain {int(bad.sum())} NaN/inf values (first at index {int(np.argmax(bad))})")
    if labels.dtype != bool:
        if not np.issubdtype(labels.dtype, np.number):
            raise ValueError(f"labels must be 0/1, got dtype {labels.dtype}")
        bad = (labels != 0) & (labels != 1)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"labels must be 0 (non-target) or 1 (target), got {labels[i]!r} at index {i}")
        labels = labels == 1
    n_target = int(labels.sum())
    if n_target == 0 or n_target == len(labels):
        which = "non-target (0)" if n_target else "target (1)"
        raise ValueError(f"trials need both classes, but there is no {which} trial")
    return scores, labels


class _SortedTrials:
    """Trials sorted once by score, so that the rates at every operating point cost O(N) (bootstrap).

    ``points(w)`` gives the thresholds ``[U + 1]`` and FAR (non-increasing, ``far[0] = 1``) and FRR
    (non-decreasing, ``frr[-1] = 1``) at each, when trial i counts ``w[i]`` times (default all 1)::

        FRR(t) = sum_i w_i [y_i = 1, s_i < t] / sum_i w_i [y_i = 1]
        FAR(t) = sum_i w_i [y_i = 0, s_i >= t] / sum_i w_i [y_i = 0]
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray):
        self.order = np.argsort(scores)  # order within tied scores is irrelevant
        sorted_scores = scores[self.order]
        self.labels = labels[self.order]
        # first[i]: index in sorted order where the i-th distinct score starts;
        # thresholding at it rejects exactly the first[i] lowest-scored trials.
        first = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
        self.first = np.r_[first, len(scores)]
        self.thresholds = np.r_[sorted_scores[self.first[:-1]], np.inf]

    def points(self, weights: Optional[np.ndarray] = None) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(thresholds, far, frr)``, each ``[U + 1]``; ``weights`` ``[N]`` in the original trial order."""
        w = np.ones(len(self.labels)) if weights is None else weights[self.order]
        targets_below = np.r_[0, np.cumsum(w * self.labels)][self.first]
        nontargets_below = np.r_[0, np.cumsum(w * ~self.labels)][self.first]
        frr = targets_below / targets_below[-1]
        far = (nontargets_below[-1] - nontargets_below) / nontargets_below[-1]
        return self.thresholds, far, frr


def _points(scores: ArrayLike, labels: ArrayLike) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(thresholds, far, frr)`` of validated trials (:class:`_SortedTrials`)."""
    return _SortedTrials(*_check_trials(scores, labels)).points()


def _eer_point(thresholds: np.ndarray, far: np.ndarray, frr: np.ndarray) -> Tuple[float, float]:
    """EER and its threshold from operating points (see :func:`eer`)."""
    diff = frr - far
    k = int(np.argmax(diff >= 0))  # exists and is >= 1: diff[0] < 0 <= diff[-1]
    a = diff[k - 1] / (diff[k - 1] - diff[k])
    rate = frr[k - 1] + a * (frr[k] - frr[k - 1])
    if np.isinf(thresholds[k]):
        threshold = thresholds[k - 1]
    else:
        threshold = (1 - a) * thresholds[k - 1] + a * thresholds[k]
    return float(rate), float(threshold)


def _min_dcf_point(thresholds: np.ndarray, far: np.ndarray, frr: np.ndarray, p_target: float,
                   c_miss: float = 1, c_fa: float = 1) -> Tuple[float, float]:
    """Normalised minDCF and its threshold from operating points (see :func:`min_dcf`)."""
    cost = c_miss * p_target * frr + c_fa * (1 - p_target) * far
    k = int(np.argmin(cost))
    normaliser = min(c_miss * p_target, c_fa * (1 - p_target))
    return float(cost[k] / normaliser), float(thresholds[k])


def det_curve(scores: ArrayLike, labels: ArrayLike) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(fpr, fnr, thresholds)`` at every operating point, each ``[U + 1]``.

    FAR falls from 1 to 0, FRR rises to 1; thresholds are the distinct scores ascending, then ``inf``.

    Example
    -------
    >>> fpr, fnr, thr = det_curve([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1])
    >>> fpr.tolist(), fnr.tolist(), thr.tolist()
    ([1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 1.0], [0.1, 0.5, 0.9, inf])
    """
    thresholds, far, frr = _points(scores, labels)
    return far, frr, thresholds


def eer(scores: ArrayLike, labels: ArrayLike) -> Tuple[float, float]:
    """``(eer, threshold)``: equal error rate in ``[0, 1]``, linearly interpolated where FRR and FAR cross.

    ``d = FRR - FAR`` rises from ``-1`` (accept all) to ``+1`` (reject all) over the operating points
    ``t``. With ``k`` the first point with ``d[k] >= 0``::

        a   = d[k-1] / (d[k-1] - d[k])             in (0, 1]
        EER = FRR[k-1] + a * (FRR[k] - FRR[k-1])   (= FAR on that segment)
        thr = (1 - a) * t[k-1] + a * t[k]          (t[k-1] if t[k] is the reject-all inf)

    Example
    -------
    Targets 0.3, 0.8; non-targets 0.1, 0.6: d goes -1/2 (t = 0.3) -> 0 (t = 0.6), so a = 1, EER = 1/2.

    >>> eer([0.3, 0.8, 0.1, 0.6], [1, 1, 0, 0])
    (0.5, 0.6)
    """
    return _eer_point(*_points(scores, labels))


def min_dcf(scores: ArrayLike, labels: ArrayLike, p_target: float = 0.01, c_miss: float = 1,
            c_fa: float = 1) -> Tuple[float, float]:
    """``(min_dcf, threshold)``: normalised minimum detection cost over all operating points::

        C_det(t) = c_miss * FRR(t) * p_target + c_fa * FAR(t) * (1 - p_target)
        minDCF   = min_t C_det(t) / min(c_miss * p_target, c_fa * (1 - p_target))

    ``0 < p_target < 1``, costs > 0. The normaliser is the cost of the better trivial system (accept all or
    reject all), so a useless system scores 1; SpeechBrain's ``metric_stats.minDCF`` returns the
    unnormalised ``min_t C_det(t)``. The threshold is ``inf`` when rejecting every trial is best.

    Example
    -------
    Targets 0.3, 0.8; non-targets 0.1, 0.6; p_target = 0.25 (normaliser 0.25): C = 0.75, 0.375, 0.5,
    0.125, 0.25 at t = 0.1, 0.3, 0.6, 0.8, inf; minimum 0.125 / 0.25 = 0.5 at t = 0.8.

    >>> min_dcf([0.3, 0.8, 0.1, 0.6], [1, 1, 0, 0], p_target=0.25)
    (0.5, 0.8)
    """
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if not (c_miss > 0 and c_fa > 0):
        raise ValueError(f"c_miss and c_fa must be > 0, got {c_miss} and {c_fa}")
    return _min_dcf_point(*_points(scores, labels), p_target, c_miss, c_fa)


def threshold_at_far(scores: ArrayLike, labels: ArrayLike, far: float = 0.01) -> float:
    """Lowest threshold whose false-accept rate is at most ``far`` (in ``[0, 1]``).

    Being the lowest, it gives the smallest FRR among those meeting the FAR target; ``inf`` only if ``far``
    is 0 and a non-target has the highest score. Choose it on development trials, then report
    :func:`error_rates` at it on test trials.

    Example
    -------
    >>> threshold_at_far([0.1, 0.2, 0.3, 0.9, 0.4], [0, 0, 0, 1, 1], far=0.34)
    0.3
    """
    if not 0 <= far <= 1:
        raise ValueError(f"far must be in [0, 1], got {far}")
    thresholds, fars, _ = _points(scores, labels)
    return float(thresholds[int(np.argmax(fars <= far))])


def error_rates(scores: ArrayLike, labels: ArrayLike, threshold: float) -> Tuple[float, float]:
    """``(far, frr)`` at a fixed threshold: fractions of non-targets accepted and of targets rejected.

    Example
    -------
    >>> error_rates([0.1, 0.5, 0.5, 0.9], [0, 0, 1, 1], threshold=0.5)
    (0.5, 0.0)
    """
    if np.isnan(threshold):
        raise ValueError("threshold is NaN")
    scores, labels = _check_trials(scores, labels)
    accepted = scores >= threshold
    return float(accepted[~labels].mean()), float((~accepted[labels]).mean())


# ------------------------------------------------------------------ bootstrap
BOOTSTRAP_METRICS = ("eer", "min_dcf_0.01", "min_dcf_0.05")


def speaker_weights(groups: ArrayLike, num_resamples: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Trial weights ``[N]`` of each of ``num_resamples`` speaker-level bootstrap resamples.

    ``groups`` ``[N]`` is the speaker of each trial (for verification: the test utterance's). Each resample
    draws as many speakers as there are, with replacement, and keeps every trial of each drawn speaker: a
    trial's weight is the number of times its speaker was drawn. Trials of one speaker are correlated;
    resampling speakers, not trials, keeps that in the interval (Bolle et al.'s "subsets bootstrap"). One
    resample at a time, so memory stays O(N).

    Example
    -------
    >>> w = np.stack(list(speaker_weights(["a", "a", "b"], 4, seed=0)))  # 2 draws of 2 speakers
    >>> w.shape, bool((w[:, 0] == w[:, 1]).all()), bool((w[:, 0] + w[:, 2] == 2).all())
    ((4, 3), True, True)
    """
    groups = np.asarray(groups)
    if groups.ndim != 1:
        raise ValueError(f"groups must be 1-D, got shape {groups.shape}")
    _, index = np.unique(groups, return_inverse=True)
    num_groups = int(index.max()) + 1 if len(index) else 0
    if num_groups < 2:
        raise ValueError(f"a speaker bootstrap needs at least 2 test speakers, got {num_groups}")
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, num_groups, size=(num_resamples, num_groups))  # [R, G], small
    for row in draws:
        yield np.bincount(row, minlength=num_groups)[index].astype(float)


def _weighted_metrics(trials: _SortedTrials, weights: np.ndarray) -> Dict[str, float]:
    """EER and normalised minDCF (0.01, 0.05) with trial weights ``[N]``."""
    points = trials.points(weights)
    return {"eer": _eer_point(*points)[0], "min_dcf_0.01": _min_dcf_point(*points, 0.01)[0],
            "min_dcf_0.05": _min_dcf_point(*points, 0.05)[0]}


def bootstrap_values(scores_a: ArrayLike, scores_b: Optional[ArrayLike], labels: ArrayLike, groups: ArrayLike,
                     num_resamples: int = 1000, seed: int = 0) -> Dict[str, np.ndarray]:
    """``{metric: [R]}``: EER and minDCF (0.01, 0.05) of ``a``, or of ``a`` minus ``b``, on each speaker resample.

    Resample r is the same for every call with the same ``groups`` and ``seed``, so the values of several
    systems (or the mean over training seeds of one system) combine resample by resample. Resamples lacking a
    class are NaN. Each system is sorted once; a resample then costs O(N) (weighted cumulative sums).
    """
    labels = _check_trials(scores_a, labels)[1]
    systems = [_SortedTrials(_check_trials(s, labels)[0], labels) for s in (scores_a, scores_b) if s is not None]
    if len(np.asarray(groups)) != len(labels):
        raise ValueError(f"groups hold {len(np.asarray(groups))} speakers for {len(labels)} trials")
    values = {name: np.full(num_resamples, np.nan) for name in BOOTSTRAP_METRICS}
    for r, weights in enumerate(speaker_weights(groups, num_resamples, seed)):
        if not weights[labels].any() or not weights[~labels].any():
            continue
        metrics = [_weighted_metrics(trials, weights) for trials in systems]
        for name in BOOTSTRAP_METRICS:
            values[name][r] = metrics[0][name] - (metrics[1][name] if len(metrics) > 1 else 0.0)
    if np.isnan(values["eer"]).all():
        raise ValueError("no bootstrap resample holds both target and non-target trials")
    return values


def percentile_ci(values: ArrayLike, confidence: float = 0.95) -> Tuple[float, float]:
    """The ``confidence`` percentile interval of bootstrap values (NaNs ignored)."""
    tail = 100 * (1 - confidence) / 2
    low, high = np.nanpercentile(np.asarray(values, dtype=float), [tail, 100 - tail])
    return float(low), float(high)


def paired_bootstrap_ci(scores_a: ArrayLike, scores_b: Optional[ArrayLike], labels: ArrayLike,
                        groups: ArrayLike, confidence: float = 0.95, **resampling) -> Dict[str, Tuple[float, float]]:
    """Bootstrap interval of ``metric(a) - metric(b)`` on the same trials and resamples.

    Both systems are scored on every resample of test speakers, so their shared difficulty cancels: a
    difference whose interval excludes 0 is significant at ``1 - confidence``. With ``scores_b=None`` this is
    the plain interval of ``metric(a)`` (:func:`bootstrap_ci`).

    Example
    -------
    >>> s = np.array([0.9, 0.2, 0.8, 0.4, 0.7, 0.1])
    >>> paired_bootstrap_ci(s, s, [1, 0, 1, 0, 1, 0], [0, 0, 1, 1, 2, 2], num_resamples=50)["eer"]
    (0.0, 0.0)
    """
    values = bootstrap_values(scores_a, scores_b, labels, groups, **resampling)
    return {name: percentile_ci(v, confidence) for name, v in values.items()}


def bootstrap_ci(scores: ArrayLike, labels: ArrayLike, groups: ArrayLike, confidence: float = 0.95,
                 **resampling) -> Dict[str, Tuple[float, float]]:
    """``{"eer" | "min_dcf_0.01" | "min_dcf_0.05": (low, high)}``: speaker-level bootstrap percentile intervals.

    ``groups`` ``[N]``: test speaker of each trial; ``resampling``: ``num_resamples`` (1000) and ``seed`` (0)
    of :func:`bootstrap_values`. Resamples lacking a class are skipped.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> labels = np.tile([1, 0, 0, 0], 50)
    >>> scores = labels + rng.normal(0, 0.6, 200)
    >>> low, high = bootstrap_ci(scores, labels, np.repeat(np.arange(20), 10), num_resamples=200)["eer"]
    >>> low < eer(scores, labels)[0] < high
    True
    """
    return paired_bootstrap_ci(scores, None, labels, groups, confidence, **resampling)


def interval_text(value: float, ci: Optional[Sequence[float]], scale: float = 1, digits: int = 2,
                  signed: bool = False) -> str:
    """``value [low, high]`` for tables (``value`` alone without ``ci``), each times ``scale``.

    >>> interval_text(0.0512, [0.04, 0.061], 100), interval_text(-0.019, None, 100, signed=True)
    ('5.12 [4.00, 6.10]', '-1.90')
    """
    fmt = f"{'+' if signed else ''}.{digits}f"
    text = format(scale * value, fmt)
    return text if ci is None else f"{text} [{format(scale * ci[0], fmt)}, {format(scale * ci[1], fmt)}]"
