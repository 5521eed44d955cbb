"""Pre-training brain: SpeechBrain's ``SpeakerBrain`` plus feature enhancement and preheating.

What differs from ``recipes/VoxCeleb/SpeakerRec/train_speaker_embeddings.py``:

- feature enhancement: optional speed perturbation (each speed may count as a new speaker, as WeSpeaker
  does), SpeechBrain's waveform ``Augmenter``, and a SpecAugment-style ``feat_augment`` on the normalised Fbank;
- preheating: LR and AAM-margin schedules evaluated at the fractional epoch ``t`` before every step
  (stateless, so a resumed run continues exactly), and an optional head-only phase with the backbone frozen;
- what every Brain of the project adds (``brains.base.RecipeBrain``): the non-finite loss guard, CPU DDP,
  checkpoint-then-log;
- the log records, per epoch, loss, speaker-ID error, LR, margin and the seconds per training step
  (``step_time_s``: data loading, forward, backward and update; validation and checkpointing excluded).
"""
import functools
import logging
import time
from typing import Sequence, Tuple

import speechbrain as sb
import torch
from speechbrain.nnet.losses import classification_error
from speechbrain.utils.metric_stats import MetricStats

from speechbrain_ext.brains.base import ConfigError, NonFiniteLossError, RecipeBrain
from speechbrain_ext.dataio import speaker_datasets

logger = logging.getLogger(__name__)
__all__ = ["ConfigError", "NonFiniteLossError", "PretrainBrain", "applied_speed", "classes_per_speaker"]


def applied_speed(speeds: Sequence[int], length: int, perturbed_length: int) -> int:
    """The speed (percent) SpeechBrain's ``SpeedPerturb`` applied to a batch, from its lengths.

    ``SpeedPerturb`` draws one speed ``s`` per batch and resamples by ``100 / s``, so ``T' = ceil(T * 100 / s)``.
    It keeps the draw only in undocumented state (``samp_index``), so the speed is read from the public result:
    the one speed with ``|T' - T * 100 / s| < 1``. ValueError when none or several fit (a batch too short to
    tell the speeds apart, or a ``SpeedPerturb`` that no longer resamples by ``100 / s``).

    Example
    -------
    >>> applied_speed([90, 100, 110], 16000, 17778), applied_speed([90, 100, 110], 16000, 14546)
    (90, 110)
    """
    fits = [s for s in speeds if abs(perturbed_length - length * 100 / s) < 1]
    if len(fits) != 1:
        raise ValueError(f"speed perturbation turned {length} samples into {perturbed_length}: "
                         f"{'several' if fits else 'none'} of the speeds {list(speeds)} fit")
    return fits[0]


def classes_per_speaker(speed_perturb, speed_as_speaker: bool) -> int:
    """Classifier classes per training speaker: one per speed when each speed is a new speaker (WeSpeaker)."""
    return len(speed_perturb.speeds) if speed_as_speaker and speed_perturb is not None else 1


class PretrainBrain(RecipeBrain):
    """Speaker-embedding training with feature enhancement and preheating.

    Modules (``modules`` in the yaml): ``compute_features``, ``mean_var_norm``, ``embedding_model``,
    ``classifier`` (cosine outputs ``[B, 1, N]``). Hparams read: ``compute_cost`` (``SubCenterAAM``),
    ``lr_schedule``, ``backbone_lr_scale``, ``margin_schedule``, ``head_only_epochs``, ``wav_augment``,
    ``feat_augment``, ``speed_perturb`` (each may be null), ``speed_as_speaker``, ``epoch_counter``,
    ``train_logger``, ``select_checkpoint`` (see ``RecipeBrain``).
    """

    train_crop_key: str = "sentence_len"  # hparam giving the training crop length, seconds
    margin: float = 0.0
    backbone_frozen: bool = False

    @classmethod
    def datasets(cls, hparams: dict):
        """``(train, valid)`` for ``recipes/train.py``: crops of the speaker manifests
        (``dataio.speaker_datasets``); ``ConfigError`` when ``out_n_neurons`` does not fit ``train_csv``."""
        train, valid, encoder = speaker_datasets(hparams, hparams[cls.train_crop_key])
        size = len(encoder) * classes_per_speaker(hparams["speed_perturb"], hparams["speed_as_speaker"])
        if hparams["out_n_neurons"] != size:
            raise ConfigError(f"out_n_neurons={hparams['out_n_neurons']} but {hparams['train_csv']} has "
                              f"{len(encoder)} speakers (x{size // len(encoder)} speeds): set --out_n_neurons={size}")
        return train, valid

    def on_fit_batch_start(self, batch, should_step: bool) -> None:
        """Preheating: set LR and margin for this step, freeze the backbone if due."""
        t = self.progress
        self.lr = self.hparams.lr_schedule.apply(self.optimizer, t)
        if self.backbone_optimizer is not None:
            for group in self.backbone_optimizer.param_groups:
                group["lr"] = self.lr * self.hparams.backbone_lr_scale
        self.margin = self.hparams.margin_schedule(t)
        self.hparams.compute_cost.set_margin(self.margin)
        self.backbone_frozen = t < self.hparams.head_only_epochs
        # eval() also freezes the backbone's BatchNorm statistics.
        self.modules.embedding_model.train(not self.backbone_frozen)
        self.batch_ids = batch.id

    def init_optimizers(self) -> None:
        """SpeechBrain's optimiser, or two when ``backbone_lr_scale`` != 1: the embedding model then gets its own,
        at the schedule's LR times the scale (a gentler update of pre-trained weights). Two optimisers rather
        than two parameter groups because SpeechBrain clips only each optimiser's first group."""
        self.backbone_optimizer = None
        if self.hparams.backbone_lr_scale == 1.0:
            super().init_optimizers()
            return
        backbone = list(self.modules.embedding_model.parameters())
        owned = {id(p) for p in backbone}
        self.optimizer = self.opt_class([p for p in self.modules.parameters() if id(p) not in owned])
        self.backbone_optimizer = self.opt_class(backbone)
        self.optimizers_dict = {"opt_class": self.optimizer, "backbone": self.backbone_optimizer}
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            self.checkpointer.add_recoverable("backbone_optimizer", self.backbone_optimizer)

    def augment_waveforms(self, wavs: torch.Tensor, lens: torch.Tensor, spk: torch.Tensor
                          ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Speed perturbation then waveform augmentation; labels follow the batch.

        ``[B, T]``, ``[B]`` relative lengths, ``[B, 1]`` labels -> ``[B', T']``, ``[B']``, ``[B', 1]``
        (B' > B when the augmenter concatenates parallel copies).
        """
        wavs, spk = self.perturb_speed(wavs, spk)
        return self.augment_only(wavs, lens, spk)

    def perturb_speed(self, wavs: torch.Tensor, spk: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Speed perturbation (one speed per batch); with ``speed_as_speaker`` the labels move to that speed's
        block. ``[B, T], [B, 1]`` -> ``[B, T'], [B, 1]``."""
        speed = self.hparams.speed_perturb
        if speed is not None:
            length = wavs.shape[1]
            wavs = speed(wavs)
            if self.hparams.speed_as_speaker:
                applied = applied_speed(speed.speeds, length, wavs.shape[1])
                spk = spk + self.speed_offset(applied) * self.num_speakers
        return wavs, spk

    def augment_only(self, wavs: torch.Tensor, lens: torch.Tensor, spk: torch.Tensor
                     ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Waveform augmentation (``wav_augment``); labels follow parallel copies."""
        augment = self.hparams.wav_augment
        if augment is not None:
            wavs, lens = augment(wavs, lens)
            spk = augment.replicate_labels(spk)
        return wavs, lens, spk

    @property
    def num_speakers(self) -> int:
        """Real training speakers: ``out_n_neurons`` / :func:`classes_per_speaker` (``recipes/train.py`` checks
        ``out_n_neurons`` against the training manifest)."""
        return self.hparams.out_n_neurons // classes_per_speaker(self.hparams.speed_perturb,
                                                                 self.hparams.speed_as_speaker)

    def speed_offset(self, speed: int) -> int:
        """Label block of a speed: 0 for the original speed, then the others in order."""
        others = [s for s in self.hparams.speed_perturb.speeds if s != 100]
        return 0 if speed == 100 else 1 + others.index(speed)

    def features(self, wavs: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Fbank -> sentence mean norm: ``[B, T]`` -> ``[B, frames, n_mels]``."""
        return self.modules.mean_var_norm(self.modules.compute_features(wavs), lens)

    def embed(self, wavs: torch.Tensor, lens: torch.Tensor, stage: sb.Stage) -> torch.Tensor:
        """Features -> [feature masking] -> ECAPA; returns ``[B, 1, D]``."""
        return self.embed_features(self.features(wavs, lens), lens, stage)

    def embed_features(self, feats: torch.Tensor, lens: torch.Tensor, stage: sb.Stage) -> torch.Tensor:
        """[Feature masking in training] -> ECAPA: ``[B, frames, n_mels]`` -> ``[B, 1, D]``."""
        if stage == sb.Stage.TRAIN and self.hparams.feat_augment is not None:
            feats, lens = self.hparams.feat_augment(feats, lens)
        with torch.set_grad_enabled(stage == sb.Stage.TRAIN and not self.backbone_frozen):
            return self.modules.embedding_model(feats, lens)

    def compute_forward(self, batch, stage):
        """Returns cosines ``[B', 1, N]``, embeddings ``[B', 1, D]`` and labels ``[B', 1]``."""
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        spk = batch.spk_id_encoded.data
        if stage == sb.Stage.TRAIN:
            wavs, lens, spk = self.augment_waveforms(wavs, lens, spk)
        emb = self.embed(wavs, lens, stage)
        return self.modules.classifier(emb), emb, spk

    def compute_objectives(self, predictions, batch, stage):
        """AAM (sub-center) loss; speaker-ID error outside training."""
        cosines, _, spk = predictions
        loss = self.hparams.compute_cost(cosines, spk)
        if stage != sb.Stage.TRAIN:
            self.error_metrics.append(batch.id, self.class_scores(cosines), spk)
        return loss

    def class_scores(self, cosines: torch.Tensor) -> torch.Tensor:
        """Margin-free scores of the real speakers, ``[B, 1, num_speakers]``: sub-centers max-pooled,
        speed-perturbed copies of a speaker folded back onto the speaker."""
        scores = self.hparams.compute_cost.logits(cosines)  # [B, N]
        return scores.reshape(scores.shape[0], -1, self.num_speakers).amax(dim=1).unsqueeze(1)

    def on_stage_start(self, stage, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.epoch_clock, self.timed_steps = time.perf_counter(), 0
        else:
            self.error_metrics = MetricStats(metric=functools.partial(classification_error, reduction="batch"))

    def on_fit_batch_end(self, batch, outputs, loss, should_step) -> None:
        """Count the epoch's steps for ``step_time_s``."""
        self.timed_steps += 1

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log loss, error, LR and margin; checkpoint on the validation error."""
        if stage == sb.Stage.TRAIN:
            # schedules at the epoch's last step (also right when resuming at its end)
            self.lr = self.hparams.lr_schedule(self.progress)
            self.margin = self.hparams.margin_schedule(self.progress)
            step_time = (time.perf_counter() - self.epoch_clock) / max(self.timed_steps, 1)
            self.train_stats = {"loss": stage_loss, **self.extra_train_stats(), "step_time_s": round(step_time, 4)}
            if self.no_valid:
                self.log_and_save(epoch, None)
            return
        stats = {"loss": stage_loss, "ErrorRate": self.error_metrics.summarize("average")}
        if stage == sb.Stage.VALID:
            self.log_and_save(epoch, stats, stats["ErrorRate"])
        else:
            self.hparams.train_logger.log_stats({"Epoch loaded": self.hparams.epoch_counter.current},
                                                test_stats=stats)

    def extra_train_stats(self) -> dict:
        """Further per-epoch training figures for the log (none here)."""
        return {}

    def log_meta(self, epoch: int) -> dict:
        """Epoch and LR, then the margin."""
        return {**super().log_meta(epoch), "margin": round(self.margin, 4)}
