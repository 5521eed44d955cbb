"""Preheating: LR warm-up and decay, AAM margin warm-up, loss-weight ramps.

The paper's "preheating (warm-up) network" is read as the two warm-ups of the standard CN-Celeb recipes
(``docs/method.md`` section 1): a linear LR warm-up followed by exponential or cosine decay (WeSpeaker
``ExponentialDecrease``, 3D-Speaker ``WarmupCosineScheduler``), and a margin warm-up (WeSpeaker
``MarginScheduler``). ``LinearRamp`` ramps the long/short KL weight lambda(t).

Every schedule here is stateless: ``schedule(t)`` is a pure function of the fractional epoch

    t = epochs completed = (epoch - 1) + batch_index / num_batches

where ``epoch`` is SpeechBrain's 1-based epoch counter and ``batch_index`` counts from 0. So t = 0.0 at the
first step of training and t = 1.0 at the first step of the second epoch. Nothing needs checkpointing: a
resumed run recomputes t from the restored epoch counter and step, and gets exactly the values of the
uninterrupted run.
"""

import math

import torch

LR_DECAYS = ("exp", "cos", "none")
MARGIN_SHAPES = ("exp", "linear")


class WarmupDecayLR:
    """Linear LR warm-up, then exponential or cosine decay to a final LR.

    With w = ``warmup_epochs``, E = ``total_epochs`` and t counting from 0::

        lr(t) = lr0 + (lr - lr0) * t / w                      t < w
        p     = min((t - w) / (E - w), 1)                     t >= w
        lr(t) = lr * (final_lr / lr) ** p                      decay="exp"
        lr(t) = final_lr + (lr - final_lr) * (1 + cos(pi p)) / 2   decay="cos"
        lr(t) = lr                                             decay="none"

    lr0 is 0 (``warmup_from_zero=True``, as WeSpeaker's ``warm_from_zero``) or ``final_lr``; w = 0 disables
    the warm-up. The exponential decay has the shape of WeSpeaker's ``ExponentialDecrease`` but starts at the
    end of the warm-up, so the peak is exactly ``lr``; after E the LR stays ``final_lr`` (> 0 for "exp").

    Example
    -------
    >>> sched = WarmupDecayLR(lr=1.0, final_lr=0.01, warmup_epochs=2, total_epochs=4)
    >>> [round(sched(t), 4) for t in (0.0, 1.0, 2.0, 3.0, 4.0, 5.0)]
    [0.0, 0.5, 1.0, 0.1, 0.01, 0.01]
    >>> optim = torch.optim.SGD(torch.nn.Linear(3, 4).parameters(), lr=1.0)
    >>> sched.apply(optim, 0.5), optim.param_groups[0]["lr"]
    (0.25, 0.25)
    """

    def __init__(self, lr: float, final_lr: float, warmup_epochs: float, total_epochs: float,
                 decay: str = "exp", warmup_from_zero: bool = True):
        if decay not in LR_DECAYS:
            raise ValueError(f"decay must be one of {LR_DECAYS}, got {decay!r}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if decay != "none" and total_epochs <= warmup_epochs:
            raise ValueError(f"total_epochs ({total_epochs}) must exceed warmup_epochs ({warmup_epochs}) for a decay")
        if decay == "exp" and (lr <= 0 or final_lr <= 0):
            raise ValueError("exponential decay needs lr > 0 and final_lr > 0")
        self.lr = lr
        self.final_lr = final_lr
        self.warmup_epochs = warmup_epochs
        self.total_epochs = total_epochs
        self.decay = decay
        self.warmup_from_zero = warmup_from_zero

    def __call__(self, t: float) -> float:
        """The learning rate at fractional epoch t."""
        if t < self.warmup_epochs:
            start = 0.0 if self.warmup_from_zero else self.final_lr
            return start + (self.lr - start) * t / self.warmup_epochs
        if self.decay == "none":
            return self.lr
        progress = min((t - self.warmup_epochs) / (self.total_epochs - self.warmup_epochs), 1.0)
        if self.decay == "exp":
            return self.lr * (self.final_lr / self.lr) ** progress
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.final_lr + (self.lr - self.final_lr) * cosine

    def apply(self, optimizer: torch.optim.Optimizer, t: float) -> float:
        """Sets the LR of every parameter group for fractional epoch t; returns it."""
        lr = self(t)
        for param_group in optimizer.param_groups:
            param_group["lr"] = lr
        return lr


class MarginScheduler:
    """AAM margin warm-up (WeSpeaker ``MarginScheduler`` shape).

    With a = ``increase_start_epoch``, b = ``fix_start_epoch``, m0 = ``initial_margin``, m1 = ``final_margin``
    (radians) and t counting from 0::

        m(t) = m0                                   t < a
        p    = (t - a) / (b - a)                    a <= t < b
        r    = (1 - exp(p ln 1e-3)) / (1 - 1e-3)    shape="exp" (r = p for "linear")
        m(t) = m0 + (m1 - m0) * r
        m(t) = m1                                   t >= b

    The exponential ramp is WeSpeaker's, normalised so that it reaches m1 exactly at b (WeSpeaker's stops at
    0.999 of the way). a = b gives a step at a; a = b = 0 a constant m1 (warm-up off). Epochs here are epochs
    completed: WeSpeaker's ``increase_start_epoch: 20`` starts the ramp at iteration (20 - 1) * epoch_iter,
    i.e. a = 19 here.

    Example
    -------
    >>> sched = MarginScheduler(0.2, increase_start_epoch=2, fix_start_epoch=4)
    >>> [round(sched(t), 4) for t in (0.0, 2.0, 3.0, 4.0, 9.0)]
    [0.0, 0.0, 0.1939, 0.2, 0.2]
    >>> round(MarginScheduler(0.2, 2, 4, shape="linear")(3.0), 4), MarginScheduler(0.2, 0, 0)(0.0)
    (0.1, 0.2)
    """

    def __init__(self, final_margin: float, increase_start_epoch: float, fix_start_epoch: float,
                 initial_margin: float = 0.0, shape: str = "exp"):
        if shape not in MARGIN_SHAPES:
            raise ValueError(f"shape must be one of {MARGIN_SHAPES}, got {shape!r}")
        if not 0 <= increase_start_epoch <= fix_start_epoch:
            raise ValueError("need 0 <= increase_start_epoch <= fix_start_epoch, got "
                             f"{increase_start_epoch} and {fix_start_epoch}")
        self.final_margin = final_margin
        self.increase_start_epoch = increase_start_epoch
        self.fix_start_epoch = fix_start_epoch
        self.initial_margin = initial_margin
        self.shape = shape

    def __call__(self, t: float) -> float:
        """The margin (radians) at fractional epoch t."""
        if t >= self.fix_start_epoch:
            return self.final_margin
        if t < self.increase_start_epoch:
            return self.initial_margin
        progress = (t - self.increase_start_epoch) / (self.fix_start_epoch - self.increase_start_epoch)
        if self.shape == "exp":
            floor = 1e-3
            ratio = (1.0 - math.exp(progress * math.log(floor))) / (1.0 - floor)
        else:
            ratio = progress
        return self.initial_margin + (self.final_margin - self.initial_margin) * ratio


class LinearRamp:
    """Linear ramp of a loss weight, e.g. the long/short KL weight lambda(t), t counting from 0::

        value(t) = final_value * min(max(t - start_epoch, 0) / ramp_epochs, 1)

    ``ramp_epochs=0`` gives a step to ``final_value`` at ``start_epoch`` (a constant when ``start_epoch=0``).

    Example
    -------
    >>> ramp = LinearRamp(final_value=1.0, ramp_epochs=4)
    >>> [ramp(t) for t in (0.0, 1.0, 2.0, 4.0, 6.0)]
    [0.0, 0.25, 0.5, 1.0, 1.0]
    >>> LinearRamp(0.5, ramp_epochs=0)(0.0)
    0.5
    """

    def __init__(self, final_value: float, ramp_epochs: float, start_epoch: float = 0):
        if ramp_epochs < 0 or start_epoch < 0:
            raise ValueError("ramp_epochs and start_epoch must be >= 0")
        self.final_value = final_value
        self.ramp_epochs = ramp_epochs
        self.start_epoch = start_epoch

    def __call__(self, t: float) -> float:
        """The value at fractional epoch t."""
        if t < self.start_epoch:
            return 0.0
        if self.ramp_epochs == 0:
            return self.final_value
        return self.final_value * min((t - self.start_epoch) / self.ramp_epochs, 1.0)
