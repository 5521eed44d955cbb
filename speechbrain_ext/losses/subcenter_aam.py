"""Multi-subspace cross-entropy: sub-center additive angular margin softmax.

The paper's "multi-subspace cross-entropy" is read as sub-center AAM-softmax (``docs/method.md`` section 2),
on the cosines of SpeechBrain's ``ECAPA_TDNN.Classifier(out_neurons=C*K)``, as SpeechBrain's
``AdditiveAngularMargin`` does. The alternative reading (the embedding split into M subspaces, each with its
own cosine classifier) is ``SubspaceClassifier`` followed by ``SubCenterAAM``.
"""

import math

import torch
import torch.nn.functional as F

FALLBACKS = ("speechbrain", "wespeaker")


class SubCenterAAM(torch.nn.Module):
    """Sub-center AAM-softmax loss with an optional inter-top-k penalty.

    References: Deng et al., "Sub-center ArcFace", ECCV 2020; Deng et al., "ArcFace", CVPR 2019; Zhao et al.,
    "Multi-query multi-head attention pooling and inter-topk penalty for speaker verification", arXiv 2110.05042.

    The input is the output of a cosine classifier whose weight has C*K rows laid out class-major
    (row j*K+k is sub-center k of class j)::

        cos[j,k] = <x/|x|, w[j,k]/|w[j,k]|>    x: [B, D], W: [C*K, D]
                                               cosines: [B, C*K] (or [B, M, C*K])
        cos[j]   = max_k cos[j,k]              -> [B, C]
        theta[j] = arccos(cos[j])
        z[y]     = s * cos(theta[y] + m)   if cos[y] > cos(pi - m)
                   s * (cos[y] - f(m))     otherwise
        z[j]     = s * cos(theta[j] - m_p) for the `topk` largest cos[j], j != y
        z[j]     = s * cos[j]              for every other class
        loss     = CE(z, y) = mean_b -log softmax(z)[b, y_b]

    The fallback offset f(m) is ``m * sin(m)`` (``fallback="speechbrain"``, SpeechBrain's
    ``AdditiveAngularMargin.mm``) or ``1 + cos(pi - m)`` (``"wespeaker"``: z[y] continuous at the threshold).
    With ``easy_margin=True`` the margin applies only where cos[y] > 0, with no fallback offset.
    Cosines are clamped to [-1 + 1e-7, 1 - 1e-7] first, as in SpeechBrain, so gradients stay finite at
    cos = +-1. With K = 1, topk = 0 and the default fallback, the loss equals SpeechBrain's
    ``LogSoftmaxWrapper(AdditiveAngularMargin(margin, scale))`` on the same cosines.
    A 3-D input [B, M, C*K] holds M subspace classifiers (``SubspaceClassifier``); the loss is averaged over M.

    Dropping sub-centers (Deng et al. 2020, section 3.2): ``count_assignments`` counts which sub-center each
    training sample of a class is nearest to; ``drop_subcenters()`` then keeps only each class's dominant one
    (K = 1 on the dominant ones). The counts and the mask are buffers, so they follow the checkpoint::

        cos[j] = cos[j, k*(j)],   k*(j) = argmax_k count[j, k]

    Margin warm-up: ``set_margin(m)`` changes m at run time; the inter-top-k margin follows as
    m_p = margin_topk * m / m_final (m_final: the constructor's ``margin``; with m_final = 0, m_p stays
    ``margin_topk``), as WeSpeaker's ``update(margin)`` does.

    Arguments
    ---------
    num_subcenters : int
        K, sub-centers per class.
    margin : float
        Final margin m, radians.
    scale : float
        Logit scale s.
    easy_margin : bool
        Margin only where cos[y] > 0, no fallback.
    topk : int
        Hardest non-target classes given the inter-top-k penalty (0: off).
    margin_topk : float
        m_p at the final margin, radians.
    fallback : str
        "speechbrain" or "wespeaker".

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

    def __init__(self, num_subcenters: int = 1, margin: float = 0.2, scale: float = 30.0,
                 easy_margin: bool = False, topk: int = 0, margin_topk: float = 0.06,
                 fallback: str = "speechbrain"):
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
        """Sets the margin m (radians) and m_p = margin_topk * m / m_final; recomputes the cached constants."""
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

        cosines: [B, C*K] or [B, 1, C*K]; targets: [B] or [B, 1].
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
        """Scalar mean CE (over B and M) of cosines [B, C*K], [B, 1, C*K] or [B, M, C*K]; targets [B] or [B, 1]."""
        cos = self._class_cosines(cosines)  # [B, M, C]
        batch, num_subspaces, num_classes = cos.shape
        targets = targets.reshape(-1).long()
        if targets.numel() != batch:
            raise ValueError(f"targets hold {targets.numel()} labels for a batch of {batch}")
        targets_flat = targets.repeat_interleave(num_subspaces)  # [B*M]
        margin_logits = self._margin_logits(cos.reshape(batch * num_subspaces, num_classes), targets_flat)
        return F.cross_entropy(margin_logits, targets_flat)

    def logits(self, cosines: torch.Tensor) -> torch.Tensor:
        """Margin-free logits s * max_k cos[j,k], averaged over M: -> [B, C]."""
        return self.scale * self._class_cosines(cosines).mean(dim=1)

    def _class_cosines(self, cosines: torch.Tensor) -> torch.Tensor:
        """Max over the K (active) sub-centers: [B, C*K] or [B, M, C*K] -> [B, M, C] (M = 1 for 2-D input)."""
        if cosines.dim() == 2:
            cosines = cosines.unsqueeze(1)
        if cosines.dim() != 3 or cosines.shape[-1] % self.num_subcenters:
            raise ValueError(f"expected cosines [B, C*K] or [B, M, C*K] with K={self.num_subcenters}, "
                             f"got {tuple(cosines.shape)}")
        batch, num_subspaces, width = cosines.shape
        cos = cosines.float().reshape(batch, num_subspaces, width // self.num_subcenters,
                                      self.num_subcenters)  # [B, M, C, K]
        if self.active.numel():
            cos = cos.masked_fill(~self.active, -2.0)  # below any cosine: never the max
        return cos.max(dim=-1).values  # [B, M, C]

    def _margin_logits(self, cos: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """s * (cosines with the target margin and the inter-top-k penalty): cos [N, C], targets [N] -> [N, C]."""
        cos = cos.clamp(-1 + 1e-7, 1 - 1e-7)
        sine = torch.sqrt(1.0 - cos * cos)  # [N, C]
        index = targets.unsqueeze(1)  # [N, 1]
        target_cos = cos.gather(1, index)  # [N, 1]
        phi = target_cos * self.cos_m - sine.gather(1, index) * self.sin_m  # cos(theta_y + m)
        if self.easy_margin:
            phi = torch.where(target_cos > 0, phi, target_cos)
        else:
            phi = torch.where(target_cos > self.threshold, phi, target_cos - self.fallback_offset)
        logits = cos.scatter(1, index, phi)  # [N, C]
        if self.topk > 0:
            if self.topk >= cos.shape[1]:
                raise ValueError(f"topk={self.topk} needs more than {cos.shape[1]} classes")
            non_target = cos.detach().scatter(1, index, -math.inf)  # [N, C]
            hardest = non_target.topk(self.topk, dim=1).indices  # [N, topk]
            penalised = torch.zeros_like(cos, dtype=torch.bool).scatter(1, hardest, True)
            phi_p = cos * self.cos_mp + sine * self.sin_mp  # cos(theta - m_p)
            logits = torch.where(penalised, phi_p, logits)
        return self.scale * logits


def dominant_subcenters(weight: torch.Tensor, num_subcenters: int, assignments: torch.Tensor) -> torch.Tensor:
    """Each class's dominant sub-center row of a class-major classifier weight (as ``drop_subcenters`` keeps)::

        k*(j) = argmax_k assignments[j, k]          assignments: [C, K] (``SubCenterAAM.assignments``)
        w[j]  = W[j*K + k*(j)]                      W: [C*K, D] -> [C, D]

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
    """Cosine classifiers on M subspaces of the embedding (the "subspace" reading of multi-subspace CE).

    Feed the output to ``SubCenterAAM``, which averages the cross-entropy over the M subspaces. Each weight
    is initialised like SpeechBrain's ECAPA ``Classifier`` (Xavier uniform)::

        x[m]      = x[m*D/M : (m+1)*D/M]               x: [B, D] -> [B, M, D/M]
        cos[m, j] = <x[m]/|x[m]|, w[m,j]/|w[m,j]|>     W: [M, C, D/M]  -> [B, M, C]

    Arguments
    ---------
    input_size : int
        D, divisible by M.
    out_neurons : int
        Outputs per subspace (C, or C*K with sub-centers).
    num_subspaces : int
        M.

    Example
    -------
    >>> head = SubspaceClassifier(input_size=8, out_neurons=3, num_subspaces=2)
    >>> cosines = head(torch.rand(4, 1, 8))
    >>> cosines.shape, bool(cosines.abs().max() <= 1.0)
    (torch.Size([4, 2, 3]), True)
    >>> SubCenterAAM()(cosines, torch.tensor([0, 1, 2, 0])).shape
    torch.Size([])
    """

    def __init__(self, input_size: int, out_neurons: int, num_subspaces: int):
        super().__init__()
        if num_subspaces < 1 or input_size % num_subspaces:
            raise ValueError(f"input_size={input_size} is not divisible into num_subspaces={num_subspaces} parts")
        self.num_subspaces = num_subspaces
        self.weight = torch.nn.Parameter(torch.empty(num_subspaces, out_neurons, input_size // num_subspaces))
        for subspace_weight in self.weight:
            torch.nn.init.xavier_uniform_(subspace_weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-subspace cosines: [B, 1, D] or [B, D] -> [B, M, C]."""
        x = x.reshape(x.shape[0], self.num_subspaces, -1)  # [B, M, D/M]
        return torch.einsum("bmd,mcd->bmc", F.normalize(x, dim=-1), F.normalize(self.weight, dim=-1))
