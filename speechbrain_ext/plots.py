"""Evaluation figures: DET curves and target/non-target score histograms.

Figures are drawn with matplotlib's Agg canvas (no display, no pyplot state) and saved as PNG through
``atomic_write``. Scores and labels ``[N]`` and thresholds are as in ``speechbrain_ext.metrics``: a trial is
accepted when ``score >= threshold``.
"""
import io
from typing import Mapping, Optional, Tuple

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from speechbrain_ext.io_utils import PathLike, atomic_write
from speechbrain_ext.metrics import ArrayLike, _check_trials, det_curve, eer

_DET_TICKS = np.array([0.0001, 0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8])
_DET_LIMITS = (0.00005, 0.9)
_DET_POINTS = 2000  # points kept per curve; 3.5 M trials give 3.5 M steps


def _probit(p: np.ndarray) -> np.ndarray:
    """Standard normal deviate of probabilities ``p`` (inverse normal CDF)."""
    return torch.special.ndtri(torch.as_tensor(p, dtype=torch.float64)).numpy()


def _thin(x: np.ndarray, y: np.ndarray, points: int) -> Tuple[np.ndarray, np.ndarray]:
    """Keep about ``points`` vertices of the polyline ``(x, y)``, evenly spaced along its length."""
    length = np.r_[0, np.cumsum(np.hypot(np.diff(x), np.diff(y)))]
    keep = np.unique(np.searchsorted(length, np.linspace(0, length[-1], points)))
    keep = np.unique(np.r_[0, keep, len(x) - 1])
    return x[keep], y[keep]


def _save(fig: Figure, path: PathLike) -> None:
    """Render ``fig`` to PNG in memory, then write it atomically."""
    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    with atomic_write(path, "wb") as f:
        f.write(buffer.getvalue())


def plot_det(curves: Mapping[str, Tuple[ArrayLike, ArrayLike]], path: PathLike,
             operating_points: Optional[Mapping[str, Tuple[float, float]]] = None) -> None:
    """Plot one DET curve per legend name of ``curves`` (``name -> (scores, labels)``), EER points marked (o),
    and where the deployed decision lands, ``operating_points`` ``name -> (far, frr)``, marked (x).

    Axes are ``probit(FAR)`` (x) and ``probit(FRR)`` (y), labelled in percent, so Gaussian score distributions
    give straight lines. Rates are clipped to the plotted range (0.005 % to 90 %).

    Example
    -------
    >>> import os, tempfile
    >>> rng = np.random.default_rng(0)
    >>> labels = rng.integers(0, 2, 500)
    >>> path = os.path.join(tempfile.mkdtemp(), "det.png")
    >>> plot_det({"cosine": (rng.normal(labels, 1.0), labels)}, path, {"cosine": (0.01, 0.4)})
    >>> open(path, "rb").read(4)
    b'\\x89PNG'
    """
    if not curves:
        raise ValueError("plot_det needs at least one curve")
    fig = Figure(figsize=(6, 6))
    ax = fig.add_subplot()
    low, high = _DET_LIMITS
    for name, (scores, labels) in curves.items():
        fpr, fnr, _ = det_curve(scores, labels)
        rate, _ = eer(scores, labels)
        x, y = _thin(_probit(np.clip(fpr, low, high)), _probit(np.clip(fnr, low, high)), _DET_POINTS)
        (line,) = ax.plot(x, y, label=f"{name} (EER {100 * rate:.2f}%)")
        point = _probit(np.clip(rate, low, high))
        ax.plot(point, point, "o", color=line.get_color())
        if operating_points and name in operating_points:
            far, frr = _probit(np.clip(np.asarray(operating_points[name], dtype=float), low, high))
            ax.plot(far, frr, "x", color=line.get_color(), ms=10, mew=2,
                    label=f"{name} deployed (FAR {100 * operating_points[name][0]:.2f}%, "
                          f"FRR {100 * operating_points[name][1]:.2f}%)")
    ticks, tick_labels = _probit(_DET_TICKS), [f"{100 * p:g}" for p in _DET_TICKS]
    limits = _probit(np.array(_DET_LIMITS))
    ax.plot(limits, limits, ":", color="grey", lw=0.8)
    ax.set_xticks(ticks, tick_labels)
    ax.set_yticks(ticks, tick_labels)
    ax.set(xlim=limits, ylim=limits, xlabel="False accept rate (%)", ylabel="False reject rate (%)", title="DET curve")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right")
    fig.tight_layout()
    _save(fig, path)


def plot_score_hist(scores: ArrayLike, labels: ArrayLike, path: PathLike, threshold: Optional[float] = None) -> None:
    """Plot target and non-target score densities on shared bins, and ``threshold`` as a vertical line.

    Example
    -------
    >>> import os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "hist.png")
    >>> plot_score_hist([0.1, 0.2, 0.7, 0.9], [0, 0, 1, 1], path, threshold=0.5)
    >>> open(path, "rb").read(4)
    b'\\x89PNG'
    """
    scores, labels = _check_trials(scores, labels)
    bins = np.histogram_bin_edges(scores, bins=100)
    fig = Figure(figsize=(7, 4))
    ax = fig.add_subplot()
    for mask, name in ((labels, "target"), (~labels, "non-target")):
        ax.hist(scores[mask], bins=bins, density=True, alpha=0.5, label=f"{name} ({int(mask.sum())})")
    if threshold is not None:
        ax.axvline(threshold, color="black", ls="--", label=f"threshold {threshold:.4g}")
    ax.set(xlabel="Score", ylabel="Density")
    ax.legend()
    fig.tight_layout()
    _save(fig, path)
