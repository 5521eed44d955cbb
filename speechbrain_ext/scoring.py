"""Trial lists, cosine scoring, AS-norm score normalisation and enrolment voiceprints.

Scoring follows the paper's evaluation conventions (method brief, section 4)::

    cosine:  s  = <(e - m)/|e - m|, (t - m)/|t - m|>           e, t: [D]
    AS-norm: s' = 0.5 * [(s - mu_e) / sigma_e + (s - mu_t) / sigma_t]
    voiceprint: v = (1/N) sum_i e_i/|e_i|                         (:func:`voiceprints`)

``e`` is an enrolment and ``t`` a test embedding; the optional mean embedding ``m`` [D] (the training-set
mean, WeSpeaker's ``mean_vec.npy``) is subtracted from both. ``mu_e``, ``sigma_e`` are the mean and
population standard deviation of the ``top_n`` highest cosine scores of ``e`` against a cohort of ``C``
training-speaker voiceprints (same mean subtraction), ``mu_t``, ``sigma_t`` the same for ``t``; with
``top_n >= C`` this is S-norm.

Evaluation, the voiceprint store and the access-control CLI all enrol with :func:`voiceprints` and score
with a :class:`Scoring`, so the threshold measured on the trial lists is the one that applies at the door.

Embeddings are given either as a mapping ``id -> vector [D]`` or as a pair ``(ids, matrix [N, D])``; trials
as :data:`speechbrain_ext.manifest.Trial` tuples. Work is done in float64 torch tensors, in batches of trials
or embeddings, so millions of trials fit in memory.
"""
from dataclasses import dataclass
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from speechbrain_ext.manifest import Trial

ArrayLike = Union[np.ndarray, torch.Tensor, Sequence[float]]
Embeddings = Union[Mapping[str, ArrayLike], Tuple[Sequence[str], ArrayLike]]

SCORE_KINDS = ("cosine", "asnorm")


def cosine_scores(trials: Sequence[Trial], enroll: Embeddings, test: Embeddings, mean: Optional[ArrayLike] = None,
                  batch_size: int = 16384) -> np.ndarray:
    """Float64 cosine score ``[T]`` of every trial, ``batch_size`` trials at a time (``~2 * batch_size * D`` floats).

    Example
    -------
    >>> enroll = {"a": [1.0, 0.0]}
    >>> test = (["x", "y"], torch.tensor([[2.0, 0.0], [1.0, 1.0]]))
    >>> cosine_scores([("a", "x", 1), ("a", "y", 0)], enroll, test).round(4).tolist()
    [1.0, 0.7071]
    """
    enroll_matrix, test_matrix, enroll_rows, test_rows = _trial_embeddings(trials, enroll, test, mean)
    scores = torch.empty(len(trials), dtype=torch.float64)
    for start in range(0, len(trials), batch_size):
        stop = start + batch_size
        e = enroll_matrix[enroll_rows[start:stop]]  # [B, D]
        t = test_matrix[test_rows[start:stop]]  # [B, D]
        scores[start:stop] = (e * t).sum(dim=1)
    return scores.numpy()


def as_norm(scores: ArrayLike, trials: Sequence[Trial], enroll: Embeddings, test: Embeddings, cohort: ArrayLike,
            top_n: int = 100, mean: Optional[ArrayLike] = None, batch_size: int = 1024) -> np.ndarray:
    """AS-norm ``[T]`` of the raw :func:`cosine_scores` ``[T]`` of ``trials`` (formula in the module docstring).

    ``cohort`` is ``[C, D]`` with ``C >= 2``; ``top_n >= 2``, and ``top_n >= C`` uses the whole cohort
    (S-norm). ``batch_size`` embeddings are scored against the cohort at once (``~batch_size * C`` floats).

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> enroll, test = {"a": torch.randn(8)}, {"x": torch.randn(8), "y": torch.randn(8)}
    >>> trials = [("a", "x", 1), ("a", "y", 0)]
    >>> as_norm(cosine_scores(trials, enroll, test), trials, enroll, test, torch.randn(50, 8), top_n=10).shape
    (2,)
    """
    scores = _to_tensor(scores, "scores")
    if scores.dim() != 1 or len(scores) != len(trials):
        raise ValueError(f"need one score per trial: {len(trials)} trials, scores of shape {tuple(scores.shape)}")
    cohort = _to_tensor(cohort, "cohort")
    if cohort.dim() != 2 or len(cohort) < 2:
        raise ValueError(f"cohort must be a [C, D] matrix with C >= 2, got shape {tuple(cohort.shape)}")
    if top_n < 2:
        raise ValueError(f"top_n must be >= 2, got {top_n}")
    enroll_matrix, test_matrix, enroll_rows, test_rows = _trial_embeddings(trials, enroll, test, mean)
    if cohort.shape[1] != enroll_matrix.shape[1]:
        raise ValueError(f"cohort dimension {cohort.shape[1]} differs from the embeddings' {enroll_matrix.shape[1]}")
    cohort = _normalise_rows(cohort, mean)
    top_n = min(top_n, len(cohort))
    mu_e, sigma_e = _cohort_stats(enroll_matrix, enroll_rows, cohort, top_n, batch_size)
    mu_t, sigma_t = _cohort_stats(test_matrix, test_rows, cohort, top_n, batch_size)
    return (0.5 * ((scores - mu_e) / sigma_e + (scores - mu_t) / sigma_t)).numpy()


def voiceprints(embeddings: ArrayLike, owner: Optional[ArrayLike] = None,
                num_groups: Optional[int] = None) -> torch.Tensor:
    """Enrolment voiceprints ``[G, D]``: the mean of the L2-normalised embeddings ``[S, D]`` of each group::

        v[g] = (1 / |S_g|) * sum_{i in S_g} e[i] / |e[i]|      S_g = {i : owner[i] = g}

    Normalising before averaging gives every utterance the same weight, whatever its norm. ``owner`` ``[S]``:
    integer group of each embedding (default: one group); ``num_groups`` defaults to ``max(owner) + 1`` and
    every group needs an embedding. Float32, computed in float64.

    Example
    -------
    >>> [round(x, 4) for x in voiceprints([[3.0, 4.0], [0.0, 2.0]])[0].tolist()]  # mean of [0.6, 0.8], [0, 1]
    [0.3, 0.9]
    >>> voiceprints([[2.0, 0.0], [0.0, 5.0], [1.0, 0.0]], owner=[0, 1, 0]).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    matrix = _to_tensor(embeddings, "embeddings")
    if matrix.dim() != 2 or len(matrix) == 0:
        raise ValueError(f"need embeddings [S, D] with S >= 1, got shape {tuple(matrix.shape)}")
    owner = torch.zeros(len(matrix), dtype=torch.long) if owner is None else torch.as_tensor(owner).long()
    if owner.shape != (len(matrix),):
        raise ValueError(f"need one group per embedding: {len(matrix)} embeddings, owner of shape {tuple(owner.shape)}")
    num_groups = int(owner.max()) + 1 if num_groups is None else num_groups
    counts = torch.bincount(owner, minlength=num_groups)  # [G]
    if len(counts) != num_groups or (counts == 0).any():
        raise ValueError(f"every one of the {num_groups} groups needs an embedding, group counts {counts.tolist()}")
    unit = _normalise_rows(matrix, None)  # [S, D]
    sums = torch.zeros(num_groups, matrix.shape[1], dtype=torch.float64).index_add_(0, owner, unit)
    return (sums / counts.unsqueeze(1)).float()


@dataclass(frozen=True)
class Scoring:
    """The score of a trial that a deployed threshold applies to: ``cosine`` or ``asnorm`` (module docstring).

    The model folder records which (``threshold.json`` and ``cohort.pt``). ``cohort`` ``[C, D]``
    (training-speaker voiceprints) is required for, and only for, ``asnorm``; ``top_n`` is its top-N per side.

    Example
    -------
    >>> trials = [("a", "x", 1)]
    >>> Scoring()(trials, {"a": [1.0, 0.0]}, {"x": [1.0, 1.0]}).round(4).tolist()
    [0.7071]
    >>> cohort = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    >>> Scoring("asnorm", cohort, top_n=3)(trials, {"a": [1.0, 0.0]}, {"x": [1.0, 1.0]}).round(4).tolist()
    [-0.1891]
    """

    kind: str = "cosine"
    cohort: Optional[torch.Tensor] = None
    top_n: int = 100

    def __post_init__(self) -> None:
        if self.kind not in SCORE_KINDS:
            raise ValueError(f"score kind must be one of {', '.join(SCORE_KINDS)}, got {self.kind!r}")
        if (self.kind == "asnorm") != (self.cohort is not None):
            raise ValueError("asnorm scoring needs a cohort and cosine scoring takes none")

    def __call__(self, trials: Sequence[Trial], enroll: Embeddings, test: Embeddings,
                 mean: Optional[ArrayLike] = None) -> np.ndarray:
        """Scores of ``trials`` ``[T]`` (arguments as in :func:`cosine_scores`)."""
        raw = cosine_scores(trials, enroll, test, mean)
        if self.kind == "cosine":
            return raw
        return as_norm(raw, trials, enroll, test, self.cohort, self.top_n, mean)


def _to_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    """Return ``x`` as a float64 CPU tensor, refusing NaN/inf."""
    x = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x, dtype=np.float64))
    x = x.to(torch.float64)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contain NaN/inf values")
    return x


def _normalise_rows(matrix: torch.Tensor, mean: Optional[ArrayLike]) -> torch.Tensor:
    """Subtract ``mean`` [D] from each row of ``matrix`` [N, D], then L2-normalise rows."""
    if mean is not None:
        mean = _to_tensor(mean, "mean")
        if mean.shape != matrix.shape[1:]:
            raise ValueError(f"mean has shape {tuple(mean.shape)}, embeddings have dimension {matrix.shape[1]}")
        matrix = matrix - mean
    norms = matrix.norm(dim=1, keepdim=True)
    if (norms == 0).any():
        raise ValueError("an embedding has zero norm (after mean subtraction); cosine is undefined")
    return matrix / norms


def _embedding_table(embeddings: Embeddings, name: str,
                     mean: Optional[ArrayLike]) -> Tuple[Dict[str, int], torch.Tensor]:
    """Turn a mapping or ``(ids, matrix)`` into ``(id -> row, normalised [N, D])``."""
    if isinstance(embeddings, Mapping):
        ids = list(embeddings)
        if not ids:
            raise ValueError(f"no {name} embeddings")
        matrix = torch.stack([_to_tensor(embeddings[i], f"{name} embedding {i!r}") for i in ids])
    else:
        ids, matrix = embeddings
        ids = list(ids)
        matrix = _to_tensor(matrix, f"{name} embeddings")
    if matrix.dim() != 2 or len(ids) != len(matrix):
        raise ValueError(f"{name} embeddings: {len(ids)} ids for a matrix of shape {tuple(matrix.shape)}")
    return {utt_id: row for row, utt_id in enumerate(ids)}, _normalise_rows(matrix, mean)


def _rows(index: Dict[str, int], ids: Sequence[str], name: str) -> torch.Tensor:
    """Rows ``[T]`` of the trials' ``ids`` in an embedding table."""
    try:
        return torch.tensor([index[i] for i in ids])
    except KeyError as e:
        raise ValueError(f"{name} id {e.args[0]!r} of a trial has no embedding") from None


def _trial_embeddings(trials: Sequence[Trial], enroll: Embeddings, test: Embeddings, mean: Optional[ArrayLike]
                      ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalised enrolment [E, D] and test [N, D] matrices, and each trial's rows in them [T]."""
    enroll_index, enroll_matrix = _embedding_table(enroll, "enrolment", mean)
    test_index, test_matrix = _embedding_table(test, "test", mean)
    if enroll_matrix.shape[1] != test_matrix.shape[1]:
        raise ValueError(
            f"enrolment embeddings have dimension {enroll_matrix.shape[1]}, test ones {test_matrix.shape[1]}")
    if len(trials) == 0:
        raise ValueError("no trials to score")
    return (enroll_matrix, test_matrix, _rows(enroll_index, [t[0] for t in trials], "enrolment"),
            _rows(test_index, [t[1] for t in trials], "test"))


def _cohort_stats(matrix: torch.Tensor, rows: torch.Tensor, cohort: torch.Tensor, top_n: int,
                  batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-N cohort mean and std of ``matrix[rows]``, each ``[len(rows)]``; only distinct rows are scored ([B, C])."""
    used, inverse = torch.unique(rows, return_inverse=True)
    mu = torch.empty(len(used), dtype=torch.float64)
    sigma = torch.empty(len(used), dtype=torch.float64)
    for start in range(0, len(used), batch_size):
        block = matrix[used[start : start + batch_size]] @ cohort.T  # [B, C]
        top = block.topk(top_n, dim=1).values  # [B, top_n]
        mu[start : start + batch_size] = top.mean(dim=1)
        sigma[start : start + batch_size] = top.std(dim=1, correction=0)
    if (sigma == 0).any():
        raise ValueError("a top-N cohort score set has zero spread; use a larger or more varied cohort")
    return mu[inverse], sigma[inverse]
