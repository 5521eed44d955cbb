"""Verification metrics computed by sorting: EER, normalised minDCF, DET curve, calibration (actual DCF, Cllr,
minCllr), and speaker-level bootstrap confidence intervals (plain and paired).

Every function sorts the ``N`` trial scores once (``O(N log N)`` time, ``O(N)`` memory), so CN-Celeb's 3.5 M
trials take seconds; SpeechBrain's ``metric_stats.minDCF`` builds a ``[2N, N]`` matrix instead and runs out of
memory there (SpeechBrain issue #1387).

A trial is **accepted when ``score >= threshold``**. For a threshold ``t``::

    FRR(t) = #{targets with score <  t} / #targets         (miss rate, FNR)
    FAR(t) = #{non-targets with score >= t} / #non-targets (false alarms, FPR)

The operating points are the thresholds ``t`` = each of the ``U`` distinct scores (ascending; the smallest
accepts every trial) plus ``t = +inf``, which rejects every trial. A threshold returned here is used as is
with ``score >= threshold``, e.g. in :func:`error_rates`.

Calibration metrics take log-likelihood ratios ``llr = log p(s | target) / p(s | non-target)`` (natural log,
``speechbrain_ext.calibration``) and judge the decisions they imply (NIST SRE, BOSARIS)::

    Bayes threshold  theta(P) = log(c_fa * (1 - P) / (c_miss * P))        accept iff llr >= theta
    actDCF(P) = [c_miss P FRR(theta) + c_fa (1 - P) FAR(theta)] / min(c_miss P, c_fa (1 - P))
    Cllr      = 1/2 [mean_tar log2(1 + e^-llr) + mean_non log2(1 + e^llr)]   (bits; 1 = uninformative)
    minCllr   = Cllr of the PAV-optimal monotone llrs of the same scores (the discrimination part of Cllr)

``scores`` and ``labels`` (1 = target, 0 = non-target) are 1-D numpy arrays, sequences or torch tensors of
equal length ``[N]``; bad input raises a ``ValueError`` with one line saying what is wrong.
"""
from typing import Dict, Iterator, Mapping, Optional, Sequence, Tuple, Union

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


def normalised_dcf(far, frr, p_target: float, c_miss: float = 1, c_fa: float = 1):
    """``(c_miss P FRR + c_fa (1 - P) FAR) / min(c_miss P, c_fa (1 - P))``, elementwise (a useless system: 1).

    >>> normalised_dcf(0.0, 1.0, 0.01), normalised_dcf(1.0, 0.0, 0.01)
    (1.0, 99.0)
    """
    return (c_miss * p_target * frr + c_fa * (1 - p_target) * far) / min(c_miss * p_target, c_fa * (1 - p_target))


def _min_dcf_point(thresholds: np.ndarray, far: np.ndarray, frr: np.ndarray, p_target: float,
                   c_miss: float = 1, c_fa: float = 1) -> Tuple[float, float]:
    """Normalised minDCF and its threshold from operating points (see :func:`min_dcf`)."""
    cost = normalised_dcf(far, frr, p_target, c_miss, c_fa)
    k = int(np.argmin(cost))
    return float(cost[k]), float(thresholds[k])


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
    _check_costs(p_target, c_miss, c_fa)
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


# ---------------------------------------------------------------- calibration
def _check_costs(p_target: float, c_miss: float, c_fa: float) -> None:
    if not 0 < p_target < 1:
        raise ValueError(f"p_target must be in (0, 1), got {p_target}")
    if not (c_miss > 0 and c_fa > 0):
        raise ValueError(f"c_miss and c_fa must be > 0, got {c_miss} and {c_fa}")


def bayes_threshold(p_target: float = 0.01, c_miss: float = 1, c_fa: float = 1) -> float:
    """``log(c_fa (1 - P) / (c_miss P))``: the llr at and above which accepting costs less than rejecting.

    >>> round(bayes_threshold(0.01), 4), bayes_threshold(0.5)
    (4.5951, 0.0)
    """
    _check_costs(p_target, c_miss, c_fa)
    return float(np.log(c_fa * (1 - p_target) / (c_miss * p_target)))


def _weighted_rates(accepted: np.ndarray, labels: np.ndarray, w: np.ndarray) -> Tuple[float, float]:
    """``(far, frr)`` of decisions ``[N]`` when trial i counts ``w[i]`` times."""
    return (float((w * (accepted & ~labels)).sum() / (w * ~labels).sum()),
            float((w * (~accepted & labels)).sum() / (w * labels).sum()))


def _cllr_terms(llrs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``log2(1 + e^-llr)`` for targets, ``log2(1 + e^llr)`` for non-targets, ``[N]`` (0 where the llr is
    +inf for a target or -inf for a non-target)."""
    return np.logaddexp(0, np.where(labels, -llrs, llrs)) / np.log(2)


def _weighted_cllr(terms: np.ndarray, labels: np.ndarray, w: np.ndarray) -> float:
    """Cllr from :func:`_cllr_terms` with trial weights ``[N]``."""
    return float(0.5 * ((w * terms * labels).sum() / (w * labels).sum()
                        + (w * terms * ~labels).sum() / (w * ~labels).sum()))


def _pav_llrs(targets: np.ndarray, nontargets: np.ndarray) -> np.ndarray:
    """PAV-optimal llrs ``[U]`` of ``U`` score groups (ascending, tied scores pooled) holding ``targets[u]``
    and ``nontargets[u]`` (weighted counts).

    The isotonic (non-decreasing) fit of the target fraction, weighted by group size, is the posterior
    ``p[u]`` that maximises the likelihood among monotone maps (pool adjacent violators, Zadrozny & Elkan;
    BOSARIS ``opt_loglr``); the llr removes the prior log-odds of the counts: ``logit(p[u]) - log(T / N)``.
    Groups left with only one class get +-inf. Uses scipy's ``isotonic_regression`` (a C++ PAV).
    """
    from scipy.optimize import isotonic_regression

    size = targets + nontargets
    used = size > 0
    posterior = np.zeros(len(size))
    posterior[used] = isotonic_regression(targets[used] / size[used], weights=size[used], increasing=True).x
    with np.errstate(divide="ignore"):
        log_odds = np.log(posterior) - np.log1p(-posterior)
    return log_odds - np.log(targets.sum() / nontargets.sum())


def _weighted_min_cllr(trials: "_SortedTrials", w: np.ndarray) -> float:
    """minCllr of sorted trials with weights ``[N]`` (original order), groups of tied scores pooled."""
    w = w[trials.order]
    targets = np.diff(np.r_[0, np.cumsum(w * trials.labels)][trials.first])  # [U]
    nontargets = np.diff(np.r_[0, np.cumsum(w * ~trials.labels)][trials.first])
    llrs = _pav_llrs(targets, nontargets)
    with np.errstate(invalid="ignore"):  # 0 * inf where a group holds no trial of a class
        tar = np.where(targets > 0, targets * np.logaddexp(0, -llrs), 0).sum() / targets.sum()
        non = np.where(nontargets > 0, nontargets * np.logaddexp(0, llrs), 0).sum() / nontargets.sum()
    return float(0.5 * (tar + non) / np.log(2))


def pav_llrs(scores: ArrayLike, labels: ArrayLike) -> np.ndarray:
    """The PAV-optimal llr ``[N]`` of each trial (see :func:`_pav_llrs`): the best monotone calibration of
    ``scores`` on these very trials, so its actual DCF equals the minDCF of ``scores`` at every prior.

    >>> pav_llrs([0.1, 0.2, 0.3, 0.4], [0, 1, 0, 1]).tolist()  # 0.2, 0.3 pooled: 1 of 2 targets
    [-inf, 0.0, 0.0, inf]
    """
    scores, labels = _check_trials(scores, labels)
    trials = _SortedTrials(scores, labels)
    targets = np.diff(np.r_[0, np.cumsum(trials.labels)][trials.first])
    nontargets = np.diff(np.r_[0, np.cumsum(~trials.labels)][trials.first])
    per_group = _pav_llrs(targets.astype(float), nontargets.astype(float))
    out = np.empty(len(scores))
    out[trials.order] = np.repeat(per_group, np.diff(trials.first))
    return out


def _check_llrs(llrs: ArrayLike, labels: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """Validated llrs (+-inf allowed, NaN not) and target mask."""
    llrs = _as_numpy(llrs, "llrs").astype(np.float64)
    if np.isnan(llrs).any():
        raise ValueError(f"llrs contain {int(np.isnan(llrs).sum())} NaN values")
    return llrs, _check_trials(np.nan_to_num(llrs), labels)[1]


def act_dcf(llrs: ArrayLike, labels: ArrayLike, p_target: float = 0.01, c_miss: float = 1,
            c_fa: float = 1) -> float:
    """Normalised actual DCF of the Bayes decisions ``llr >= bayes_threshold(p_target, c_miss, c_fa)``.

    Always ``>=`` :func:`min_dcf` of the same llrs (that minimises over every threshold); equal when the
    llrs are calibrated on the trials themselves (:func:`pav_llrs`).

    Example
    -------
    >>> act_dcf([3.0, 5.0, -1.0, 4.0], [1, 1, 0, 0], p_target=0.01)  # theta 4.6: FRR 1/2, FAR 0
    0.5
    """
    _check_costs(p_target, c_miss, c_fa)
    llrs, labels = _check_llrs(llrs, labels)
    far, frr = _weighted_rates(llrs >= bayes_threshold(p_target, c_miss, c_fa), labels, np.ones(len(llrs)))
    return float(normalised_dcf(far, frr, p_target, c_miss, c_fa))


def cllr(llrs: ArrayLike, labels: ArrayLike) -> float:
    """Cllr in bits (module docstring): 0 for a perfect system, 1 for llr = 0 everywhere.

    >>> cllr([0.0, 0.0], [1, 0]), round(cllr([10.0, -10.0], [1, 0]), 4)
    (1.0, 0.0001)
    """
    llrs, labels = _check_llrs(llrs, labels)
    return _weighted_cllr(_cllr_terms(llrs, labels), labels, np.ones(len(llrs)))


def min_cllr(scores: ArrayLike, labels: ArrayLike) -> float:
    """Cllr of :func:`pav_llrs`: the least Cllr any monotone map of ``scores`` reaches on these trials.

    >>> min_cllr([0.1, 0.2, 0.3, 0.4], [0, 0, 1, 1])  # separable
    0.0
    """
    scores, labels = _check_trials(scores, labels)
    return _weighted_min_cllr(_SortedTrials(scores, labels), np.ones(len(scores)))


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


CALIBRATION_METRICS = ("act_dcf_0.01", "act_dcf_0.05", "cllr", "min_cllr")
PRIORS = (0.01, 0.05)  # p_target of every DCF reported (min_dcf_<P>, act_dcf_<P>)


class _System:
    """One system's trials, prepared once so that each metric of a weighted resample costs O(N).

    ``scores`` ``[N]`` give EER and minDCF; ``llrs`` ``[N]`` (optional) the calibration metrics
    (:data:`CALIBRATION_METRICS`); ``decisions`` (optional) ``{name: accepted [N] bool}`` give ``far_<name>`` and
    ``frr_<name>``.
    """

    def __init__(self, scores: np.ndarray, labels: np.ndarray, llrs: Optional[ArrayLike] = None,
                 decisions: Optional[Mapping[str, ArrayLike]] = None):
        self.labels = labels
        self.trials = _SortedTrials(scores, labels)
        self.llrs = None if llrs is None else _check_llrs(llrs, labels)[0]
        if self.llrs is not None:
            self.llr_trials = _SortedTrials(self.llrs, labels)
            self.cllr_terms = _cllr_terms(self.llrs, labels)
            self.bayes = {p: self.llrs >= bayes_threshold(p) for p in PRIORS}
        self.decisions = {name: _as_numpy(d, f"decisions {name}").astype(bool)
                          for name, d in (decisions or {}).items()}
        if any(len(d) != len(labels) for d in self.decisions.values()):
            raise ValueError(f"decisions must hold one entry per trial ({len(labels)})")

    def metrics(self, w: Optional[np.ndarray] = None) -> Dict[str, float]:
        """Every metric of the system when trial i counts ``w[i]`` times (default once)."""
        w = np.ones(len(self.labels)) if w is None else w
        points = self.trials.points(w)
        values = {"eer": _eer_point(*points)[0], **{f"min_dcf_{p}": _min_dcf_point(*points, p)[0] for p in PRIORS}}
        if self.llrs is not None:
            for p in PRIORS:
                values[f"act_dcf_{p}"] = float(normalised_dcf(*_weighted_rates(self.bayes[p], self.labels, w), p))
            values["cllr"] = _weighted_cllr(self.cllr_terms, self.labels, w)
            values["min_cllr"] = _weighted_min_cllr(self.llr_trials, w)
        for name, accepted in self.decisions.items():
            values[f"far_{name}"], values[f"frr_{name}"] = _weighted_rates(accepted, self.labels, w)
        return values


def system_metrics(scores: ArrayLike, labels: ArrayLike, llrs: Optional[ArrayLike] = None,
                   decisions: Optional[Mapping[str, ArrayLike]] = None) -> Dict[str, float]:
    """EER, minDCF at each of :data:`PRIORS`, and with ``llrs`` ``[N]`` actDCF at each, Cllr and minCllr (of the
    llrs), and with ``decisions`` ``{name: accepted [N]}`` ``far_<name>``/``frr_<name>``: one system's figures.

    Example
    -------
    >>> m = system_metrics([0.3, 0.8, 0.1, 0.6], [1, 1, 0, 0], llrs=[0.0, 0.0, 0.0, 0.0],
    ...                    decisions={"at_threshold": [True, True, False, True]})
    >>> m["eer"], m["cllr"], m["act_dcf_0.01"], m["far_at_threshold"], m["frr_at_threshold"]
    (0.5, 1.0, 1.0, 0.5, 0.0)
    """
    scores, labels = _check_trials(scores, labels)
    return _System(scores, labels, llrs, decisions).metrics()


def bootstrap_values(scores_a: ArrayLike, scores_b: Optional[ArrayLike], labels: ArrayLike, groups: ArrayLike,
                     num_resamples: int = 1000, seed: int = 0, llrs: Optional[ArrayLike] = None,
                     decisions: Optional[Mapping[str, ArrayLike]] = None) -> Dict[str, np.ndarray]:
    """``{metric: [R]}``: the metrics of ``a`` (:func:`system_metrics`), or of ``a`` minus ``b``, on each speaker
    resample.

    ``llrs`` and ``decisions`` are system ``a``'s (only without ``b``): they add the calibration metrics and
    the FAR/FRR of the decisions. Resample r is the same for every call with the same ``groups`` and ``seed``,
    so the values of several systems (or the mean over training seeds of one system) combine resample by
    resample. Resamples lacking a class are NaN. Each system is sorted once; a resample then costs O(N)
    (weighted cumulative sums).
    """
    labels = _check_trials(scores_a, labels)[1]
    if scores_b is not None and (llrs is not None or decisions):
        raise ValueError("llrs and decisions are for a single system (scores_b=None)")
    systems = [_System(_check_trials(scores_a, labels)[0], labels, llrs, decisions)]
    if scores_b is not None:
        systems.append(_System(_check_trials(scores_b, labels)[0], labels))
    if len(np.asarray(groups)) != len(labels):
        raise ValueError(f"groups hold {len(np.asarray(groups))} speakers for {len(labels)} trials")
    values: Dict[str, np.ndarray] = {}
    for r, weights in enumerate(speaker_weights(groups, num_resamples, seed)):
        if not weights[labels].any() or not weights[~labels].any():
            continue
        metrics = [system.metrics(weights) for system in systems]
        for name, value in metrics[0].items():
            values.setdefault(name, np.full(num_resamples, np.nan))[r] = value - (
                metrics[1][name] if len(metrics) > 1 else 0.0)
    if not values:
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
    """``{metric: (low, high)}``: speaker-level bootstrap percentile intervals of :func:`system_metrics`.

    ``groups`` ``[N]``: test speaker of each trial; ``resampling``: ``num_resamples`` (1000), ``seed`` (0),
    ``llrs`` and ``decisions`` of :func:`bootstrap_values`. Resamples lacking a class are skipped.

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
