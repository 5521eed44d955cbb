"""Transfer brain: pre-trained ECAPA adapted to short digit strings with the joint loss.

    L = L_msce(long) + w_s * L_msce(short) + lambda(t) * L_ls(short, teacher(long))

``L_msce`` is the multi-subspace cross-entropy (``SubCenterAAM``: K sub-centers, optionally dropped to the
dominant one at ``subcenter_drop_epoch``), ``L_ls`` the long-short term (``LongShortKL``: embedding cosine
distance and/or a DINO-style posterior KL), ``lambda(t)`` a ramp (``kl_weight``).

What differs from ``PretrainBrain`` (see ``docs/method.md``):

- **Multi-scale short crops, unpadded.** Each row gives a long crop (``long_len`` s, repeat-padded when
  shorter, so no zero padding reaches BatchNorm). Per batch one short length is drawn from ``short_scales``;
  each short crop is a random window of it inside its long crop, in its own forward at its own length.
- **A teacher that is not the live network** (``teacher``): ``frozen``, the stage-1 embedding model; ``ema``,
  ``theta_T <- m * theta_T + (1 - m) * theta_S`` after every optimiser step (``teacher_momentum`` m);
  ``self``, the student's own long-crop output, detached (the first formulation, kept as an ablation).
  The teacher only sees the long crop, in eval mode, without gradient.
- The plain fine-tuning baseline (``short_loss_weight`` and ``kl_final_weight`` 0) skips the short forward.
- Per epoch, ``train_log.txt`` has every loss term and the posterior entropy of the long and short crops; a
  run whose long-crop CE rises for two epochs at a fixed margin while the long-short term falls is flagged.
"""
import copy
import json
import logging
import os
import random
from typing import Optional

import speechbrain as sb
import torch
from speechbrain.utils.checkpoints import mark_as_loader, mark_as_saver, register_checkpoint_hooks
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.parameter_transfer import Pretrainer

from speechbrain_ext.brains.pretrain import ConfigError, PretrainBrain
from speechbrain_ext.io_utils import write_json
from speechbrain_ext.manifest import SAMPLE_RATE
from speechbrain_ext.model_folder import resolve_embedding_checkpoint

logger = logging.getLogger(__name__)
TEACHERS = ("self", "ema", "frozen")


class TransferBrain(PretrainBrain):
    """``PretrainBrain`` with a pre-trained backbone and the long-short joint loss.

    Extra hparams: ``pretrained_path`` (a checkpoint folder, a training save folder or an exported model
    folder; null trains from scratch), ``long_len``, ``short_scales`` (seconds), ``teacher``,
    ``teacher_momentum``, ``kl_loss`` (``LongShortKL``), ``kl_weight`` (a schedule of ``t``),
    ``short_loss_weight`` (weight of L_msce on the short crop), ``subcenter_drop_epoch`` (null: keep K).
    """

    train_crop_key = "long_len"
    teacher: Optional[torch.nn.Module] = None

    def on_fit_start(self) -> None:
        """Load the pre-trained embedding model, build the teacher, then SpeechBrain's
        fit start (which resumes this run's own checkpoint, the EMA teacher's too)."""
        mode = self.hparams.teacher
        if mode not in TEACHERS:
            raise ConfigError(f"teacher must be one of {TEACHERS}, got {mode!r}")
        if mode == "frozen" and not self.hparams.pretrained_path:
            raise ConfigError("teacher: frozen needs pretrained_path (the stage-1 model it freezes)")
        if self.uses_short and self.hparams.pad_mode != "repeat":
            raise ConfigError("the short crops are cut from the long crop, which must be unpadded: "
                              "pad_mode: repeat (zero padding only for plain fine-tuning)")
        if self.hparams.pretrained_path:
            ckpt = resolve_embedding_checkpoint(self.hparams.pretrained_path)
            pretrainer = Pretrainer(
                collect_in=os.path.join(self.hparams.save_folder, "pretrained"),
                loadables={"embedding_model": self.modules.embedding_model},
                paths={"embedding_model": ckpt})
            run_on_main(pretrainer.collect_files)
            pretrainer.load_collected()
        # not in self.modules either: its sub-center buffers must live (and be restored) on the device
        self.hparams.compute_cost.to(self.device)
        if mode != "self":
            # not in self.modules: no DDP wrapping, no optimiser, no train() switch
            self.teacher = copy.deepcopy(self.modules.embedding_model).eval().requires_grad_(False)
            if mode == "ema" and self.checkpointer is not None:
                # optional: a checkpoint written with another teacher starts the EMA from the student
                self.checkpointer.add_recoverable("ema_teacher", self.teacher, optional_load=True)
        self.epoch_terms = EpochTerms()
        if self.checkpointer is not None:  # optional: checkpoints written before it existed
            self.checkpointer.add_recoverable("epoch_terms", self.epoch_terms, optional_load=True)
        super().on_fit_start()

    @property
    def uses_short(self) -> bool:
        """Whether the short crops are forwarded at all (not for plain fine-tuning)."""
        return self.hparams.short_loss_weight > 0 or self.hparams.kl_weight.final_value > 0

    def on_fit_batch_start(self, batch, should_step: bool) -> None:
        super().on_fit_batch_start(batch, should_step)
        self.kl_weight = self.hparams.kl_weight(self.progress)
        if self.subcenter_drop_due(lead=0):
            dominant = self.hparams.compute_cost.drop_subcenters()
            logger.info("epoch %d: sub-centers dropped to the dominant one of each of %d speakers",
                        self.hparams.epoch_counter.current, len(dominant))

    def subcenter_drop_due(self, lead: float) -> bool:
        """Whether the K sub-centers are all still active and t >= ``subcenter_drop_epoch`` - ``lead``."""
        drop = self.hparams.subcenter_drop_epoch
        return drop is not None and not self.hparams.compute_cost.active.numel() and self.progress >= drop - lead

    def short_crops(self, wavs: torch.Tensor) -> torch.Tensor:
        """A random window of one drawn length per batch inside each long crop: ``[B, T]`` (equal lengths, no
        padding) -> ``[B, S]``, S = min(round(choice(short_scales) * 16000), T).

        Example
        -------
        >>> brain = TransferBrain.__new__(TransferBrain)
        >>> brain.hparams = type("H", (), {"short_scales": [0.5]})()
        >>> wavs = torch.arange(16000.).repeat(3, 1)
        >>> short = brain.short_crops(wavs)
        >>> short.shape, bool((short[:, 1:] - short[:, :-1] == 1).all())
        (torch.Size([3, 8000]), True)
        """
        length = min(int(round(random.choice(self.hparams.short_scales) * SAMPLE_RATE)), wavs.shape[1])
        starts = torch.randint(0, wavs.shape[1] - length + 1, (wavs.shape[0], 1), device=wavs.device)
        return wavs.gather(1, starts + torch.arange(length, device=wavs.device))

    def compute_forward(self, batch, stage):
        """Training: long crops, then (unless plain fine-tuning) short crops and the teacher. Returns a dict:
        ``long``/``short`` = ``(cosines [B,1,N], embeddings [B,1,D], labels [B,1])``, ``teacher`` = ``[B,1,D]``."""
        if stage != sb.Stage.TRAIN:
            return super().compute_forward(batch, stage)
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        # one speed for the long crop and the short crop cut from it: with speed_as_speaker
        # both then carry the same label, and the teacher term pulls toward the same class
        wavs, spk = self.perturb_speed(wavs, batch.spk_id_encoded.data)
        long_wavs, long_lens, long_spk = self.augment_only(wavs, lens, spk)
        if long_wavs.shape[0] != wavs.shape[0]:
            raise ConfigError("TransferBrain needs a wav_augment that keeps the batch size "
                             "(concat_original: False, parallel_augment: False)")
        feats = self.features(long_wavs, long_lens)
        emb_long = self.embed_features(feats, long_lens, stage)
        out = {"long": (self.modules.classifier(emb_long), emb_long, long_spk)}
        if self.uses_short:
            short = self.short_crops(wavs)
            short_wavs, short_lens, short_spk = self.augment_only(short, torch.ones_like(lens), spk)
            emb_short = self.embed(short_wavs, short_lens, stage)
            out["short"] = (self.modules.classifier(emb_short), emb_short, short_spk)
            out["teacher"] = self.teacher_embeddings(feats, long_lens, emb_long)
        return out

    @torch.no_grad()
    def teacher_embeddings(self, feats: torch.Tensor, lens: torch.Tensor,
                           student_long: torch.Tensor) -> torch.Tensor:
        """Teacher embeddings ``[B, 1, D]`` of the long-crop features ``[B, frames, n_mels]``."""
        if self.teacher is None:
            return student_long.detach()
        return self.teacher(feats, lens)

    def compute_objectives(self, predictions, batch, stage):
        """Joint loss in training; the pre-training objective otherwise."""
        if stage != sb.Stage.TRAIN:
            return super().compute_objectives(predictions, batch, stage)
        cost = self.hparams.compute_cost
        cos_long, _, spk_long = predictions["long"]
        loss = cost(cos_long, spk_long)
        if self.subcenter_drop_due(lead=1):
            cost.count_assignments(cos_long, spk_long)  # the epoch before the drop: the trained head
        self.loss_terms = {"msce_long": loss.detach(), "entropy_long": entropy(cost.logits(cos_long))}
        if "short" not in predictions:
            return loss
        cos_short, emb_short, spk_short = predictions["short"]
        loss_short = cost(cos_short, spk_short)
        kl_loss = self.hparams.kl_loss
        logits_short = cost.logits(cos_short)
        logits_teacher = None
        if kl_loss.posterior_weight > 0:
            with torch.no_grad():
                logits_teacher = cost.logits(self.modules.classifier(predictions["teacher"]))
        terms = kl_loss.details(logits_short, logits_teacher, emb_short, predictions["teacher"], spk_short)
        self.loss_terms.update(msce_short=loss_short.detach(), kl=terms.kl.detach(),
                               cosine=terms.cosine.detach(), entropy_short=entropy(logits_short))
        return loss + self.hparams.short_loss_weight * loss_short + self.kl_weight * terms.loss

    def on_fit_batch_end(self, batch, outputs, loss, should_step) -> None:
        """Accumulate each loss term for the epoch log; move the EMA teacher."""
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        self.epoch_terms.add(self.loss_terms)
        if should_step and self.hparams.teacher == "ema":
            ema_update(self.teacher, self.modules.embedding_model, self.hparams.teacher_momentum)

    def extra_train_stats(self) -> dict:
        """Epoch means of every loss term and entropy, lambda, and the collapse flag."""
        terms = self.epoch_terms.take_means()
        # from the schedule, not the last batch: a run resumed at an epoch's end has none
        stats = {**terms, "kl_weight": round(self.hparams.kl_weight(self.progress), 4)}
        if "cosine" in terms:
            history = self.epoch_terms.history
            history[:] = [*history, (round(self.margin, 6), terms["msce_long"], terms["kl"] + terms["cosine"])][-3:]
            if is_collapsing(history):
                logger.warning("epoch %d: long-crop CE rose for two epochs while the long-short term "
                               "fell: the consistency loss may be collapsing the posteriors",
                               self.hparams.epoch_counter.current)
                stats["collapse_warning"] = 1
        return stats


@register_checkpoint_hooks
class EpochTerms:
    """The loss terms summed over the epoch so far, and the last three epochs' ``(margin, CE_long, L_ls)``
    for the collapse flag. Checkpointed, so that a run resumed mid-epoch logs whole-epoch means and a resumed
    run keeps the flag's history."""

    def __init__(self):
        self.sums, self.count, self.history = {}, 0, []

    def add(self, terms: dict) -> None:
        for name, value in terms.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value)
        self.count += 1

    def take_means(self) -> dict:
        """The epoch's mean of each term; the sums start again."""
        means = {name: total / max(self.count, 1) for name, total in self.sums.items()}
        self.sums, self.count = {}, 0
        return means

    @mark_as_saver
    def save(self, path) -> None:
        write_json(path, {"sums": self.sums, "count": self.count, "history": self.history})

    @mark_as_loader
    def load(self, path, end_of_epoch) -> None:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
        self.sums, self.count, self.history = state["sums"], state["count"], [tuple(h) for h in state["history"]]


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean entropy (nats) of softmax(logits): ``[B, C]`` -> scalar."""
    log_p = torch.log_softmax(logits.detach().float(), dim=-1)
    return -(log_p.exp() * log_p).sum(dim=-1).mean()


def is_collapsing(history) -> bool:
    """True when, over the last three epochs ``(margin, CE_long, L_ls)`` at one margin,
    CE_long rose twice while L_ls fell twice.

    Example
    -------
    >>> is_collapsing([(0.2, 3.0, 2.0), (0.2, 3.1, 1.8), (0.2, 3.3, 1.5)])
    True
    >>> is_collapsing([(0.1, 3.0, 2.0), (0.2, 3.1, 1.8), (0.2, 3.3, 1.5)])
    False
    """
    if len(history) < 3 or len({m for m, _, _ in history}) != 1:
        return False
    (_, c0, l0), (_, c1, l1), (_, c2, l2) = history
    return c0 < c1 < c2 and l0 > l1 > l2


@torch.no_grad()
def ema_update(teacher: torch.nn.Module, student: torch.nn.Module, momentum: float) -> None:
    """``theta_T <- m * theta_T + (1 - m) * theta_S``; buffers (BatchNorm statistics) copied.

    ``student`` may be wrapped in DistributedDataParallel.

    Example
    -------
    >>> t, s = torch.nn.Linear(1, 1, bias=False), torch.nn.Linear(1, 1, bias=False)
    >>> _ = torch.nn.init.constant_(t.weight, 1.0), torch.nn.init.constant_(s.weight, 0.0)
    >>> ema_update(t, s, 0.9)
    >>> round(t.weight.item(), 6)
    0.9
    """
    student = getattr(student, "module", student)
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)
    for t, s in zip(teacher.buffers(), student.buffers()):
        t.copy_(s)
