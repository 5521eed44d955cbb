"""Comparing verification systems over training seeds, with speaker-bootstrap intervals.

An ablation trains each variant once per seed; every variant of a seed is scored on the same trial list. For
one condition (e.g. ``1s``) and metric m:

- a variant's figure is the mean over seeds of m on the full trial list;
- its 95 % interval is the percentile interval of the mean over seeds of m on bootstrap resample r (test
  speakers resampled with all their trials, :func:`speechbrain_ext.metrics.bootstrap_values`), r = 1..R;
  resample r of a seed is the same trials for every variant (same speakers, same seed);
- its paired difference from a reference variant is the mean over seeds of m(variant) - m(reference), with
  the interval of the same difference taken resample by resample, so what the two share cancels.

Inputs are ``recipes/evaluate.py`` output folders (``scores*.txt``) and the test manifest of the split (for
the speaker of each test utterance).
"""
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from speechbrain_ext.manifest import read_manifest, read_scores
from speechbrain_ext.metrics import BOOTSTRAP_METRICS, bootstrap_values, eer, min_dcf, percentile_ci


@dataclass
class SeedResult:
    """One system on one seed's trials: full-list metrics and bootstrap values ``[R]``."""

    trials: List[tuple]
    point: Dict[str, float]
    values: Dict[str, np.ndarray]


def seed_result(eval_folder: Path, condition: str, test_csv: Path, seed: int, num_resamples: int) -> SeedResult:
    """Metrics of one evaluation folder's condition (scores file of ``recipes/evaluate.py``), with its
    speaker-bootstrap values.

    The values are cached in ``<eval_folder>/bootstrap_<condition>_<seed>_<R>_<digest>.npz``, the digest that
    of the scores file and the test manifest, so a re-done evaluation never meets the values of the one before.
    """
    path = eval_folder / ("scores.txt" if condition == "full" else f"scores_{condition}.txt")
    trials, scores = read_scores(path)
    labels = np.array([t[2] for t in trials])
    point = {"eer": eer(scores, labels)[0], "min_dcf_0.01": min_dcf(scores, labels, 0.01)[0],
             "min_dcf_0.05": min_dcf(scores, labels, 0.05)[0]}
    digest = hashlib.sha1(path.read_bytes() + Path(test_csv).read_bytes()).hexdigest()[:12]
    cache = eval_folder / f"bootstrap_{condition}_{seed}_{num_resamples}_{digest}.npz"
    if cache.is_file():
        values = dict(np.load(cache))
    else:
        speaker_of = {row.id: row.spk_id for row in read_manifest(test_csv)}
        missing = [t[1] for t in trials if t[1] not in speaker_of]
        if missing:
            raise ValueError(f"{path}: test id {missing[0]!r} is not in {test_csv}")
        groups = [speaker_of[t[1]] for t in trials]
        values = bootstrap_values(scores, None, labels, groups, num_resamples, seed)
        np.savez(cache, **values)
    return SeedResult(trials, point, values)


def summarise(results: Sequence[SeedResult], reference: Optional[Sequence[SeedResult]] = None,
              confidence: float = 0.95) -> Dict[str, object]:
    """Per-seed figures, the mean's interval, and the paired difference from ``reference`` (same seeds, trials).

    ``{m: [per seed], m + "_mean": float, m + "_ci": [low, high], "diff_vs_baseline": {m: mean difference,
    m + "_ci": [low, high]}}`` for m in :data:`~speechbrain_ext.metrics.BOOTSTRAP_METRICS`.

    Example
    -------
    >>> a = SeedResult([("e", "t", 1)], {"eer": 0.2, "min_dcf_0.01": 0.5, "min_dcf_0.05": 0.4},
    ...                {m: np.array([0.1, 0.3]) for m in BOOTSTRAP_METRICS})
    >>> summarise([a, a], [a, a])["diff_vs_baseline"]["eer_ci"]
    [0.0, 0.0]
    """
    out: Dict[str, object] = {}
    diff: Dict[str, object] = {}
    for m in BOOTSTRAP_METRICS:
        out[m] = [r.point[m] for r in results]
        out[f"{m}_mean"] = float(np.mean(out[m]))
        out[f"{m}_ci"] = list(percentile_ci(np.mean([r.values[m] for r in results], axis=0), confidence))
        if reference is not None:
            if len(reference) != len(results):
                raise ValueError(f"paired comparison over {len(results)} seeds against {len(reference)}")
            if any(r.trials != ref.trials for r, ref in zip(results, reference)):
                raise ValueError("paired comparison needs the same trials for both systems")
            diff[m] = float(np.mean([r.point[m] - ref.point[m] for r, ref in zip(results, reference)]))
            deltas = np.mean([r.values[m] - ref.values[m] for r, ref in zip(results, reference)], axis=0)
            diff[f"{m}_ci"] = list(percentile_ci(deltas, confidence))
    if reference is not None:
        out["diff_vs_baseline"] = diff
    return out
