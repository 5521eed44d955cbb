"""Long/short embedding relative entropy.

The paper's "long and short speech embedding relative entropy loss" maps the short-crop embedding distribution
onto the richer long-crop one. No source defines it exactly; this module implements its closest published
relatives (``docs/method.md`` section 2): a temperature KL between the long- and short-crop speaker posteriors
with the long side stop-gradded (Jung et al., ASRU 2019; the T^2 convention of Hinton et al., 2015), an optional
cosine distance between the embeddings (Jung et al.), and, as an ablation, a KL between per-speaker Gaussians.
"""

from collections import namedtuple
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

# Scalars: loss = posterior_weight * kl + cosine_weight * cosine; kl by mode; cosine = 1 - cos(e_S, sg(e_L)) or 0.
LongShortKLDetails = namedtuple("LongShortKLDetails", ["loss", "kl", "cosine"])

MODES = ("posterior", "gaussian")


class LongShortKL(torch.nn.Module):
    """Long/short relative entropy with the long branch as a detached teacher (``sg``: stop-gradient).

    ``mode="posterior"`` (default), on margin-free logits z (e.g. ``SubCenterAAM.logits``, s * max_k cos)::

        p_L  = softmax(sg(z_L) / T)                    z_L, z_S: [B, C]
        p_S  = softmax(z_S / T)
        kl   = T^2 / B * sum_b sum_j p_L[b,j] * log(p_L[b,j] / p_S[b,j])

    i.e. ``F.kl_div(log p_S, p_L, reduction="batchmean") * T * T``. DINO rules (Caron et al. 2021), so that
    the teacher does not collapse: a sharper teacher (``teacher_temperature`` T_t < T) and teacher logits
    centred by their running mean c (``center_momentum`` m_c > 0; updated in training mode after the loss)::

        p_L = softmax((sg(z_L) - c) / T_t),    c <- m_c * c + (1 - m_c) * mean_b z_L

    (the defaults, T_t = T and m_c = 0, give the plain KL above).

    ``mode="gaussian"``, on embeddings e and labels y: for every speaker with n_y >= 2 samples in the batch,
    diagonal Gaussians of its short and its long embeddings (unbiased variance + ``variance_floor``)::

        mu_S, var_S, mu_L, var_L                       e_S, e_L: [B, D] -> [D]
        kl_y = 1/2 * sum_d [ log(var_L / var_S) + (var_S + (mu_S - mu_L)^2) / var_L - 1 ]
        kl   = mean_y kl_y         (0, still attached to e_S, if no speaker has n_y >= 2)

    The sum over D makes it a true KL that grows with D; the sampler must put >= 2 utterances of a speaker in
    a batch for it to act. Embeddings are used as given; the temperature is not used in this mode.

    Both modes add an optional embedding term (needs ``short_emb`` and ``long_emb``)::

        cosine = mean_b (1 - cos(e_S[b], sg(e_L[b])))  e: [B, D] or [B, 1, D]
        loss   = posterior_weight * kl + cosine_weight * cosine

    With ``posterior_weight=0`` the KL is not computed (logits may be None): embedding-level distillation only.
    The weight lambda(t) of this loss in the objective is applied by the Brain (``schedulers.LinearRamp``).
    ``details`` returns every term, as SpeechBrain's ``VariationalAutoencoderLoss`` does, for the log.

    Arguments
    ---------
    temperature : float
        T (posterior mode).
    cosine_weight : float
        Weight of the cosine term (0: off).
    mode : str
        "posterior" or "gaussian".
    variance_floor : float
        Added to every per-speaker variance (gaussian mode).
    posterior_weight : float
        Weight of the KL term (0: embedding term only).
    teacher_temperature : float, optional
        T_t; None: ``temperature``.
    center_momentum : float
        m_c; 0: no centring.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> short_logits, long_logits = torch.randn(4, 3), torch.randn(4, 3)
    >>> kl_fn = LongShortKL(temperature=2.0)
    >>> bool(kl_fn(short_logits, long_logits) > 0)
    True
    >>> abs(float(kl_fn(long_logits, long_logits))) < 1e-6
    True
    >>> emb = torch.rand(4, 1, 8)
    >>> details = LongShortKL(cosine_weight=0.5).details(short_logits, long_logits, short_emb=emb, long_emb=emb)
    >>> details._fields, abs(float(details.cosine)) < 1e-6
    (('loss', 'kl', 'cosine'), True)
    """

    def __init__(self, temperature: float = 1.0, cosine_weight: float = 0.0, mode: str = "posterior",
                 variance_floor: float = 1e-4, posterior_weight: float = 1.0,
                 teacher_temperature: Optional[float] = None, center_momentum: float = 0.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if cosine_weight < 0:
            raise ValueError(f"cosine_weight must be >= 0, got {cosine_weight}")
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if not 0 <= center_momentum < 1:
            raise ValueError(f"center_momentum must be in [0, 1), got {center_momentum}")
        self.temperature = temperature
        self.teacher_temperature = temperature if teacher_temperature is None else teacher_temperature
        if self.teacher_temperature <= 0:
            raise ValueError(f"teacher_temperature must be > 0, got {teacher_temperature}")
        self.cosine_weight = cosine_weight
        self.posterior_weight = posterior_weight
        self.center_momentum = center_momentum
        self.mode = mode
        self.variance_floor = variance_floor
        # running centre of the teacher logits [C]; not checkpointed (a resumed
        # run re-estimates it within a few steps, as its momentum is short)
        self.register_buffer("center", torch.zeros(0), persistent=False)

    def forward(self, short_logits, long_logits, short_emb=None, long_emb=None, targets=None) -> torch.Tensor:
        """The scalar ``details(...).loss``."""
        return self.details(short_logits, long_logits, short_emb, long_emb, targets).loss

    def details(self, short_logits: Optional[torch.Tensor], long_logits: Optional[torch.Tensor],
                short_emb: Optional[torch.Tensor] = None, long_emb: Optional[torch.Tensor] = None,
                targets: Optional[torch.Tensor] = None) -> LongShortKLDetails:
        """Every term (``kl`` and ``cosine`` unweighted).

        Logits [B, C] (posterior mode; None with ``posterior_weight=0``); embeddings [B, D] or [B, 1, D];
        targets [B] or [B, 1] (gaussian mode).
        """
        have_emb = short_emb is not None and long_emb is not None
        if have_emb:
            short_emb = short_emb.reshape(short_emb.shape[0], -1)  # [B, D]
            long_emb = long_emb.reshape(long_emb.shape[0], -1).detach()  # [B, D]
        elif self.cosine_weight > 0 or self.mode == "gaussian":
            raise ValueError("short_emb and long_emb are needed for the cosine term and the gaussian mode")

        if self.mode == "posterior" and self.posterior_weight == 0:
            kl = torch.zeros((), device=short_emb.device if have_emb else None)
        elif self.mode == "posterior":
            if short_logits is None or long_logits is None:
                raise ValueError("posterior mode needs short_logits and long_logits")
            kl = self._posterior_kl(short_logits, long_logits)
        else:
            if targets is None:
                raise ValueError("gaussian mode needs targets")
            kl = self._gaussian_kl(short_emb, long_emb, targets.reshape(-1))

        if have_emb:
            cosine = (1.0 - F.cosine_similarity(short_emb, long_emb, dim=-1)).mean()
        else:
            cosine = torch.zeros_like(kl)
        return LongShortKLDetails(
            loss=self.posterior_weight * kl + self.cosine_weight * cosine, kl=kl, cosine=cosine)

    def _posterior_kl(self, short_logits: torch.Tensor, long_logits: torch.Tensor) -> torch.Tensor:
        """T^2 * KL(softmax((sg(z_L) - c)/T_t) || softmax(z_S/T)), batch mean; updates c. [B, C] -> scalar."""
        temp = self.temperature
        long_logits = long_logits.detach()
        if self.center.shape != long_logits.shape[1:]:
            self.center = torch.zeros_like(long_logits[0])
        log_p_short = F.log_softmax(short_logits / temp, dim=-1)  # [B, C]
        p_long = F.softmax((long_logits - self.center) / self.teacher_temperature, dim=-1)  # [B, C]
        if self.center_momentum > 0 and self.training:
            m = self.center_momentum
            self.center = m * self.center + (1 - m) * long_logits.mean(dim=0)
        return F.kl_div(log_p_short, p_long, reduction="batchmean") * temp * temp

    def _gaussian_kl(self, short_emb: torch.Tensor, long_emb: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean over speakers of KL(N_S || N_L): embeddings [B, D] (long detached), targets [B] -> scalar."""
        _, inverse, counts = torch.unique(targets, return_inverse=True, return_counts=True)  # [B], [S]
        keep = counts >= 2  # [S]
        if not bool(keep.any()):
            return (short_emb * 0.0).sum()
        assign = F.one_hot(inverse, counts.numel()).to(short_emb.dtype).T  # [S, B]
        counts = counts.to(short_emb.dtype).unsqueeze(1)  # [S, 1]
        mu_s, var_s = self._moments(short_emb, assign, inverse, counts)  # [S, D]
        mu_l, var_l = self._moments(long_emb, assign, inverse, counts)  # [S, D]
        kl = 0.5 * (torch.log(var_l / var_s) + (var_s + (mu_s - mu_l) ** 2) / var_l - 1.0).sum(dim=-1)  # [S]
        return kl[keep].mean()

    def _moments(self, emb: torch.Tensor, assign: torch.Tensor, inverse: torch.Tensor,
                 counts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Per-speaker mean and floored unbiased variance, [S, D] each.

        emb [B, D]; assign: one-hot speaker of each sample [S, B]; inverse: its speaker slot [B]; counts [S, 1].
        """
        mean = assign @ emb / counts  # [S, D]
        centred = emb - mean[inverse]  # [B, D]
        var = assign @ centred**2 / (counts - 1).clamp(min=1)  # [S, D]
        return mean, var + self.variance_floor
