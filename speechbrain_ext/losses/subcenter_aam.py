"""Multi-subspace cross-entropy: sub-center additive angular margin softmax.

The paper's "multi-subspace cross-entropy" speaker classification loss is read
as sub-center AAM-softmax (the best match, see ``docs/method.md`` section 2).
The loss works on the cosines that SpeechBrain's cosine classifier
``speechbrain.lobes.models.ECAPA_TDNN.Classifier(out_neurons=C*K)`` outputs,
exactly as SpeechBrain's ``AdditiveAngularMargin`` does. The alternative
reading (the embedding split into M subspaces, each with its own cosine
classifier) is ``SubspaceClassifier`` followed by ``SubCenterAAM``.

Authors
 * speechbrain_ext contributors
"""

import math
from collections import namedtuple
from typing import Union

import torch
import torch.nn.functional as F
from speechbrain.nnet.losses import (
    AdditiveAngularMargin,
    AngularMargin,
    LogSoftmaxWrapper,
)

SubCenterAAMDetails = namedtuple("SubCenterAAMDetails", ["loss", "logits"])
SubCenterAAMDetails.__doc__ = """Terms of ``SubCenterAAM.details``.

loss : torch.Tensor
    Scalar cross-entropy on the margin logits.
logits : torch.Tensor
    Margin-free logits s * max_k cos[j,k], shape [B, C] (averaged over M).
"""

FALLBACKS = ("speechbrain", "wespeaker")


class SubCenterAAM(torch.nn.Module):
    """Sub-center AAM-softmax loss with an optional inter-top-k penalty.

    This is the paper's "multi-subspace cross-entropy". References:
    Deng et al., "Sub-center ArcFace", ECCV 2020; Deng et al., "ArcFace",
    CVPR 2019; Zhao et al., "Multi-query multi-head attention pooling and
    inter-topk penalty for speaker verification", arXiv 2110.05042.

    The input is the output of a cosine classifier whose weight has C*K rows
    laid out class-major (row j*K+k is sub-center k of class j)::

        cos[j,k] = <x/|x|, w[j,k]/|w[j,k]|>    x: [B, D], W: [C*K, D]
                                               cosines: [B, C*K] (or [B, M, C*K])
        cos[j]   = max_k cos[j,k]              -> [B, C]
        theta[j] = arccos(cos[j])
        z[y]     = s * cos(theta[y] + m)   if cos[y] > cos(pi - m)
                   s * (cos[y] - f(m))     otherwise
        z[j]     = s * cos(theta[j] - m_p) for the `topk` largest cos[j], j != y
        z[j]     = s * cos[j]              for every other class
        loss     = CE(z, y) = mean_b -log softmax(z)[b, y_b]

    The fallback offset f(m) is ``m * sin(m)`` (``fallback="speechbrain"``,
    SpeechBrain's ``AdditiveAngularMargin.mm``) or ``1 + cos(pi - m)``
    (``fallback="wespeaker"``, which makes z[y] continuous at the threshold).
    With ``easy_margin=True`` the margin is applied only where cos[y] > 0
    and there is no fallback offset.

    Cosines are clamped to [-1 + 1e-7, 1 - 1e-7] before the margin, as in
    SpeechBrain, so gradients stay finite at cos = +-1. With K = 1, topk = 0
    and the default fallback, the loss equals SpeechBrain's
    ``LogSoftmaxWrapper(AdditiveAngularMargin(margin, scale))`` on the same
    cosines (its KL-to-one-hot summed and divided by B is the mean CE).

    A 3-D input [B, M, C*K] with M > 1 holds M subspace classifiers (see
    ``SubspaceClassifier``); the loss is then averaged over the M subspaces.

    Dropping sub-centers (Deng et al. 2020, section 3.2): train with K
    sub-centers, count which sub-center each training sample of a class is
    assigned to (``count_assignments``), then ``drop_subcenters()`` keeps
    only each class's dominant (most-assigned) sub-center; from then on the
    masked sub-centers are ignored, which is K = 1 on the dominant ones::

        cos[j] = cos[j, k*(j)],   k*(j) = argmax_k count[j, k]

    The counts and the mask are buffers, so they follow the checkpoint.

    Margin warm-up: ``set_margin(m)`` changes the target margin at run time.
    The inter-top-k margin follows it as m_p = margin_topk * m / m_final,
    where m_final is the ``margin`` given to the constructor (as WeSpeaker's
    ``update(margin)`` does); with m_final = 0, m_p stays ``margin_topk``.

    Arguments
    ---------
    num_subcenters : int
        K, the number of sub-centers per class.
    margin : float
        Final additive angular margin m, in radians.
    scale : float
        Logit scale s.
    easy_margin : bool
        If True, apply the margin only where cos[y] > 0 (no fallback).
    topk : int
        Number of hardest non-target classes that get the inter-top-k
        penalty (0 disables it).
    margin_topk : float
        Inter-top-k margin m_p at the final margin, in radians.
    fallback : str
        "speechbrain" (f(m) = m sin m) or "wespeaker" (f(m) = 1 + cos(pi-m)).

    Example
    -------
    >>> from speechbrain.lobes.models.ECAPA_TDNN import Classifier
    >>> _ = torch.manual_seed(0)
    >>> head = Classifier(input_size=8, out_neurons=3 * 2)  # C=3, K=2
    >>> cosines = head(torch.rand(4, 1, 8))  # [B, 1, C*K]
    >>> cosines.shape
    torch.Size([4, 1, 6])
    >>> loss_fn = SubCenterAAM(num_subcenters=2, margin=0.2, scale=30.0)
    >>> loss = loss_fn(cosines, torch.tensor([0, 1, 2, 0]))
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    >>> loss_fn.logits(cosines).shape  # margin-free, [B, C]
    torch.Size([4, 3])
    >>> loss_fn.set_margin(0.0)
    >>> loss_fn.margin
    0.0
    """

    def __init__(
        self,
        num_subcenters: int = 1,
        margin: float = 0.2,
        scale: float = 30.0,
        easy_margin: bool = False,
        topk: int = 0,
        margin_topk: float = 0.06,
        fallback: str = "speechbrain",
    ):
        super().__init__()
        if num_subcenters < 1:
            raise ValueError(f"num_subcenters must be >= 1, got {num_subcenters}")
        if topk < 0:
            raise ValueError(f"topk must be >= 0, got {topk}")
        if fallback not in FALLBACKS:
            raise ValueError(f"fallback must be one of {FALLBACKS}, got {fallback!r}")
        self.num_subcenters = num_subcenters
        self.scale = scale
        self.easy_margin = easy_margin
        self.topk = topk
        self.fallback = fallback
        self.final_margin = float(margin)
        self.final_margin_topk = float(margin_topk)
        self.set_margin(margin)
        # [C, K]; empty until the first count (C is only known from the input)
        self.register_buffer("assignments", torch.zeros(0, num_subcenters, dtype=torch.long))
        self.register_buffer("active", torch.zeros(0, num_subcenters, dtype=torch.bool))

    def set_margin(self, margin: float) -> None:
        """Sets the target margin m and recomputes the cached constants.

        The inter-top-k margin becomes m_p = margin_topk * m / m_final.

        Arguments
        ---------
        margin : float
            New additive angular margin m, in radians.
        """
        self.margin = float(margin)
        if self.final_margin > 0:
            self.margin_topk = self.final_margin_topk * self.margin / self.final_margin
        else:
            self.margin_topk = self.final_margin_topk
        self.cos_m = math.cos(self.margin)
        self.sin_m = math.sin(self.margin)
        self.threshold = math.cos(math.pi - self.margin)
        if self.fallback == "speechbrain":
            self.fallback_offset = math.sin(math.pi - self.margin) * self.margin
        else:
            self.fallback_offset = 1.0 + math.cos(math.pi - self.margin)
        self.cos_mp = math.cos(self.margin_topk)
        self.sin_mp = math.sin(self.margin_topk)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        """Resize the lazily sized ``assignments``/``active`` buffers to the saved ones."""
        for name in ("assignments", "active"):
            saved = state_dict.get(prefix + name)
            if saved is not None:  # on this module's device (SpeechBrain loads onto the CPU)
                setattr(self, name, torch.zeros_like(saved, device=getattr(self, name).device))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def count_assignments(self, cosines: torch.Tensor, targets: torch.Tensor) -> None:
        """Add to ``assignments[y, k]`` the samples of class y nearest to sub-center k.

        Arguments
        ---------
        cosines : [B, C*K] or [B, 1, C*K]; targets : [B] or [B, 1].
        """
        cos = cosines.reshape(cosines.shape[0], -1, self.num_subcenters)  # [B, C, K]
        if self.assignments.shape[0] != cos.shape[1]:
            self.assignments = torch.zeros(cos.shape[1], self.num_subcenters, dtype=torch.long,
                                           device=cos.device)
        targets = targets.reshape(-1).long()
        nearest = cos[torch.arange(len(targets)), targets].argmax(dim=-1)  # [B]
        self.assignments.index_put_((targets, nearest), torch.ones_like(nearest), accumulate=True)

    def drop_subcenters(self) -> torch.Tensor:
        """Keep each class's most-assigned sub-center only; returns their indices ``[C]``."""
        if self.assignments.shape[0] == 0:
            raise RuntimeError("drop_subcenters needs count_assignments on training data first")
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(self.assignments)  # every rank keeps the same sub-centers
        dominant = self.assignments.argmax(dim=1)  # [C]
        self.active = F.one_hot(dominant, self.num_subcenters).bool()
        return dominant

    def forward(self, cosines: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Computes the sub-center AAM cross-entropy.

        Arguments
        ---------
        cosines : torch.Tensor
            Classifier cosines, [B, C*K], [B, 1, C*K] or [B, M, C*K].
        targets : torch.Tensor
            Class indices (long), [B] or [B, 1].

        Returns
        -------
        loss : torch.Tensor
            Scalar mean cross-entropy (averaged over B and M).
        """
        return self.details(cosines, targets).loss

    def details(
        self, cosines: torch.Tensor, targets: torch.Tensor
    ) -> SubCenterAAMDetails:
        """Computes the loss and the margin-free logits in one pass.

        Arguments
        ---------
        cosines : torch.Tensor
            Classifier cosines, [B, C*K], [B, 1, C*K] or [B, M, C*K].
        targets : torch.Tensor
            Class indices (long), [B] or [B, 1].

        Returns
        -------
        details : SubCenterAAMDetails
            ``loss`` (scalar) and ``logits`` ([B, C], margin-free, averaged
            over M), as returned by ``forward`` and ``logits``.
        """
        cos = self._class_cosines(cosines)  # [B, M, C]
        batch, num_subspaces, num_classes = cos.shape
        targets = targets.reshape(-1).long()
        if targets.numel() != batch:
            raise ValueError(
                f"targets hold {targets.numel()} labels for a batch of {batch}"
            )
        cos_flat = cos.reshape(batch * num_subspaces, num_classes)  # [B*M, C]
        targets_flat = targets.repeat_interleave(num_subspaces)  # [B*M]
        margin_logits = self._margin_logits(cos_flat, targets_flat)  # [B*M, C]
        loss = F.cross_entropy(margin_logits, targets_flat)
        return SubCenterAAMDetails(loss=loss, logits=self.scale * cos.mean(dim=1))

    def logits(self, cosines: torch.Tensor) -> torch.Tensor:
        """Margin-free logits s * max_k cos[j,k], averaged over M subspaces.

        Arguments
        ---------
        cosines : torch.Tensor
            Classifier cosines, [B, C*K], [B, 1, C*K] or [B, M, C*K].

        Returns
        -------
        logits : torch.Tensor
            Scaled class logits, [B, C].
        """
        return self.scale * self._class_cosines(cosines).mean(dim=1)

    def _class_cosines(self, cosines: torch.Tensor) -> torch.Tensor:
        """Takes the max over the K sub-centers of each class.

        Arguments
        ---------
        cosines : torch.Tensor
            [B, C*K], [B, 1, C*K] or [B, M, C*K].

        Returns
        -------
        cos : torch.Tensor
            [B, M, C] (M = 1 for 2-D input).
        """
        if cosines.dim() == 2:
            cosines = cosines.unsqueeze(1)
        if cosines.dim() != 3 or cosines.shape[-1] % self.num_subcenters:
            raise ValueError(
                f"expected cosines [B, C*K] or [B, M, C*K] with K="
                f"{self.num_subcenters}, got {tuple(cosines.shape)}"
            )
        batch, num_subspaces, width = cosines.shape
        cos = cosines.float().reshape(
            batch, num_subspaces, width // self.num_subcenters, self.num_subcenters
        )  # [B, M, C, K]
        if self.active.numel():
            cos = cos.masked_fill(~self.active, -2.0)  # below any cosine: never the max
        return cos.max(dim=-1).values  # [B, M, C]

    def _margin_logits(self, cos: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Applies the target margin and the inter-top-k penalty, then scales.

        Arguments
        ---------
        cos : torch.Tensor
            Class cosines, [N, C].
        targets : torch.Tensor
            Class indices, [N].

        Returns
        -------
        logits : torch.Tensor
            s * (margin-adjusted cosines), [N, C].
        """
        cos = cos.clamp(-1 + 1e-7, 1 - 1e-7)
        sine = torch.sqrt(1.0 - cos * cos)  # [N, C]
        index = targets.unsqueeze(1)  # [N, 1]
        target_cos = cos.gather(1, index)  # [N, 1]
        target_sine = sine.gather(1, index)  # [N, 1]
        phi = target_cos * self.cos_m - target_sine * self.sin_m  # cos(theta_y + m)
        if self.easy_margin:
            phi = torch.where(target_cos > 0, phi, target_cos)
        else:
            phi = torch.where(
                target_cos > self.threshold, phi, target_cos - self.fallback_offset
            )
        logits = cos.scatter(1, index, phi)  # [N, C]
        if self.topk > 0:
            num_classes = cos.shape[1]
            if self.topk >= num_classes:
                raise ValueError(
                    f"topk={self.topk} needs more than {num_classes} classes"
                )
            non_target = cos.detach().scatter(1, index, -math.inf)  # [N, C]
            hardest = non_target.topk(self.topk, dim=1).indices  # [N, topk]
            penalised = torch.zeros_like(cos, dtype=torch.bool).scatter(1, hardest, True)
            phi_p = cos * self.cos_mp + sine * self.sin_mp  # cos(theta - m_p)
            logits = torch.where(penalised, phi_p, logits)
        return self.scale * logits


def dominant_subcenters(weight: torch.Tensor, num_subcenters: int, assignments: torch.Tensor) -> torch.Tensor:
    """Each class's dominant sub-center: the one most of its training samples were nearest to.

    The classifier weight holds K rows per class, class-major (row j*K+k is
    sub-center k of class j, as ``SubCenterAAM`` reads it)::

        k*(j) = argmax_k assignments[j, k]          assignments: [C, K]
        w[j]  = W[j*K + k*(j)]                      W: [C*K, D] -> [C, D]

    ``assignments`` are ``SubCenterAAM.assignments`` (counted by
    ``count_assignments``); ``drop_subcenters`` keeps the same sub-centers.

    Example
    -------
    >>> W = torch.arange(12.).reshape(6, 2)  # C=3 classes, K=2 sub-centers, D=2
    >>> dominant_subcenters(W, 2, torch.tensor([[5, 1], [0, 3], [2, 2]])).tolist()
    [[0.0, 1.0], [6.0, 7.0], [8.0, 9.0]]
    """
    num_classes = weight.shape[0] // num_subcenters
    if weight.shape[0] != num_classes * num_subcenters or assignments.shape != (num_classes, num_subcenters):
        raise ValueError(f"expected weight [C*K, D] and assignments [C, K] with K={num_subcenters}, got "
                         f"{tuple(weight.shape)} and {tuple(assignments.shape)}")
    rows = torch.arange(num_classes, device=weight.device) * num_subcenters + assignments.argmax(dim=1)
    return weight[rows]


class SubspaceClassifier(torch.nn.Module):
    """Cosine classifiers on M subspaces of the embedding ("subspace" reading).

    The alternative reading of "multi-subspace cross-entropy": the embedding
    is split into M sub-vectors of D/M dimensions, each scored by its own
    cosine classifier. Feed the output to ``SubCenterAAM`` (with
    ``num_subcenters=1``, or K if ``out_neurons = C*K``), which averages the
    cross-entropy over the M subspaces::

        x[m]      = x[m*D/M : (m+1)*D/M]               x: [B, D] -> [B, M, D/M]
        cos[m, j] = <x[m]/|x[m]|, w[m,j]/|w[m,j]|>     W: [M, C, D/M]
                                                       -> [B, M, C]

    Each classifier weight is initialised like SpeechBrain's ECAPA
    ``Classifier`` (Xavier uniform).

    Arguments
    ---------
    input_size : int
        Embedding size D (divisible by M).
    out_neurons : int
        Number of outputs per subspace (C, or C*K with sub-centers).
    num_subspaces : int
        Number of subspaces M.

    Example
    -------
    >>> head = SubspaceClassifier(input_size=8, out_neurons=3, num_subspaces=2)
    >>> cosines = head(torch.rand(4, 1, 8))
    >>> cosines.shape
    torch.Size([4, 2, 3])
    >>> bool(cosines.abs().max() <= 1.0)
    True
    >>> loss = SubCenterAAM()(cosines, torch.tensor([0, 1, 2, 0]))
    >>> loss.shape
    torch.Size([])
    """

    def __init__(self, input_size: int, out_neurons: int, num_subspaces: int):
        super().__init__()
        if num_subspaces < 1 or input_size % num_subspaces:
            raise ValueError(
                f"input_size={input_size} is not divisible into "
                f"num_subspaces={num_subspaces} parts"
            )
        self.num_subspaces = num_subspaces
        self.weight = torch.nn.Parameter(
            torch.empty(num_subspaces, out_neurons, input_size // num_subspaces)
        )
        for subspace_weight in self.weight:
            torch.nn.init.xavier_uniform_(subspace_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Computes the per-subspace cosines.

        Arguments
        ---------
        x : torch.Tensor
            Embeddings, [B, 1, D] or [B, D].

        Returns
        -------
        cosines : torch.Tensor
            [B, M, C].
        """
        x = x.reshape(x.shape[0], self.num_subspaces, -1)  # [B, M, D/M]
        return torch.einsum(
            "bmd,mcd->bmc", F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1)
        )


def set_margin(
    loss_module: Union[SubCenterAAM, LogSoftmaxWrapper, AngularMargin], margin: float
) -> None:
    """Sets the margin of a margin loss in place (for the margin warm-up).

    Works on ``SubCenterAAM`` (calls its ``set_margin``), on SpeechBrain's
    ``AdditiveAngularMargin`` (updates ``margin`` and its cached ``cos_m``,
    ``sin_m``, ``th`` and ``mm`` consistently), on ``AngularMargin``, and on a
    ``LogSoftmaxWrapper`` around either.

    Arguments
    ---------
    loss_module : SubCenterAAM, LogSoftmaxWrapper or AngularMargin
        The loss whose margin is changed.
    margin : float
        New margin m, in radians (cosine units for ``AngularMargin``).

    Example
    -------
    >>> sb_loss = LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2, scale=30))
    >>> set_margin(sb_loss, 0.1)
    >>> sb_loss.loss_fn.margin, round(sb_loss.loss_fn.cos_m, 6)
    (0.1, 0.995004)
    """
    if isinstance(loss_module, SubCenterAAM):
        loss_module.set_margin(margin)
    elif isinstance(loss_module, LogSoftmaxWrapper):
        set_margin(loss_module.loss_fn, margin)
    elif isinstance(loss_module, AdditiveAngularMargin):
        loss_module.margin = float(margin)
        loss_module.cos_m = math.cos(margin)
        loss_module.sin_m = math.sin(margin)
        loss_module.th = math.cos(math.pi - margin)
        loss_module.mm = math.sin(math.pi - margin) * margin
    elif isinstance(loss_module, AngularMargin):
        loss_module.margin = float(margin)
    else:
        raise TypeError(
            f"cannot set the margin of {type(loss_module).__name__}; expected "
            "SubCenterAAM, AdditiveAngularMargin, AngularMargin or a "
            "LogSoftmaxWrapper around one"
        )


def margin_of(loss_module: Union[SubCenterAAM, LogSoftmaxWrapper, AngularMargin]) -> float:
    """Returns the current margin of a loss accepted by ``set_margin``.

    Arguments
    ---------
    loss_module : SubCenterAAM, LogSoftmaxWrapper or AngularMargin
        The margin loss.

    Returns
    -------
    margin : float
        The margin in use.

    Example
    -------
    >>> margin_of(LogSoftmaxWrapper(AdditiveAngularMargin(margin=0.2)))
    0.2
    """
    if isinstance(loss_module, LogSoftmaxWrapper):
        return margin_of(loss_module.loss_fn)
    if isinstance(loss_module, (SubCenterAAM, AngularMargin)):
        return float(loss_module.margin)
    raise TypeError(f"{type(loss_module).__name__} has no margin")
