"""Pre-training brain: SpeechBrain's ``SpeakerBrain`` plus feature enhancement and preheating.

What differs from ``recipes/VoxCeleb/SpeakerRec/train_speaker_embeddings.py``:

- feature enhancement: optional speed perturbation (each speed may count as a new speaker, as WeSpeaker
  does), SpeechBrain's waveform ``Augmenter``, and a SpecAugment-style ``feat_augment`` on the normalised Fbank;
- preheating: LR and AAM-margin schedules evaluated at the fractional epoch ``t`` before every step
  (stateless, so a resumed run continues exactly), and an optional head-only phase with the backbone frozen;
- a non-finite loss stops training with a message naming the batch, before any optimiser step, so no
  checkpoint holds the bad update;
- the log records, per epoch, loss, speaker-ID error, LR, margin and the seconds per training step
  (``step_time_s``: data loading, forward, backward and update; validation and checkpointing excluded).
"""
import functools
import logging
import time
from typing import Optional, Sequence, Tuple

import speechbrain as sb
import torch
from torch.nn.parallel import DistributedDataParallel
from speechbrain.nnet.losses import classification_error
from speechbrain.utils.metric_stats import MetricStats

logger = logging.getLogger(__name__)


class ConfigError(ValueError):
    """Hparams that cannot work together; the message is one line saying which and why."""


class NonFiniteLossError(FloatingPointError):
    """Training loss became NaN/inf; the message names the epoch, step and utterances."""


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


class PretrainBrain(sb.Brain):
    """Speaker-embedding training with feature enhancement and preheating.

    Modules (``modules`` in the yaml): ``compute_features``, ``mean_var_norm``, ``embedding_model``,
    ``classifier`` (cosine outputs ``[B, 1, N]``). Hparams read: ``compute_cost`` (``SubCenterAAM``),
    ``lr_schedule``, ``backbone_lr_scale``, ``margin_schedule``, ``head_only_epochs``, ``wav_augment``,
    ``feat_augment``, ``speed_perturb`` (each may be null), ``speed_as_speaker``, ``epoch_counter``,
    ``train_logger``, ``select_checkpoint`` (``valid``: keep the checkpoint of lowest validation error; ``last``).
    """

    train_crop_key: str = "sentence_len"  # hparam giving the training crop length, seconds
    steps_per_epoch: int = 1
    lr: float = 0.0
    margin: float = 0.0
    backbone_frozen: bool = False
    no_valid: bool = False

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """SpeechBrain's loader; remembers the number of training batches per epoch."""
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        if stage == sb.Stage.TRAIN:
            self.steps_per_epoch = max(len(loader), 1)
        return loader

    @property
    def progress(self) -> float:
        """Fractional epoch ``t`` of the current step (0.0 at the first step of epoch 1), from the epoch counter
        and ``self.step``, both restored from an intra-epoch checkpoint, so the schedules resume exactly."""
        return (self.hparams.epoch_counter.current - 1) + (self.step - 1) / self.steps_per_epoch

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

    def check_loss_isfinite(self, loss: torch.Tensor) -> None:
        """Stop at once on a non-finite loss, naming the batch (before any update)."""
        if not torch.isfinite(loss):
            ids = ", ".join(self.batch_ids[:4]) + (", ..." if len(self.batch_ids) > 4 else "")
            raise NonFiniteLossError(f"non-finite training loss ({loss.item()}) at epoch "
                                     f"{self.hparams.epoch_counter.current}, step {self.step}, batch [{ids}]; "
                                     "stopped before the update, so the last checkpoint is intact")

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
            self.log_and_save(epoch, stats)
        else:
            self.hparams.train_logger.log_stats({"Epoch loaded": self.hparams.epoch_counter.current},
                                                test_stats=stats)

    def extra_train_stats(self) -> dict:
        """Further per-epoch training figures for the log (none here)."""
        return {}

    def log_and_save(self, epoch: int, valid_stats: Optional[dict]) -> None:
        """Checkpoint, then log: a run killed in between does not log an epoch twice."""
        if valid_stats is None or self.hparams.select_checkpoint == "last":
            # without ErrorRate in the meta, checkpoints.best_checkpoint takes the newest
            meta = {"epoch": epoch, **({} if valid_stats is None else {"valid_error": valid_stats["ErrorRate"]})}
            self.checkpointer.save_and_keep_only(meta=meta, max_keys=["epoch"])
        else:
            self.checkpointer.save_and_keep_only(meta={"ErrorRate": valid_stats["ErrorRate"], "epoch": epoch},
                                                 min_keys=["ErrorRate"])
        meta = {"epoch": epoch, "lr": round(self.lr, 8), "margin": round(self.margin, 4)}
        self.hparams.train_logger.log_stats(meta, train_stats=self.train_stats, valid_stats=valid_stats)

    def _wrap_distributed(self) -> None:
        """DDP on CPU (gloo) with plain BatchNorm; SpeechBrain's wrapping otherwise.

        SpeechBrain 1.1.2 converts every BatchNorm to ``SyncBatchNorm``, which only runs on GPUs, so
        ``torchrun ... --distributed_backend=gloo`` on CPU fails in ``DistributedDataParallel``. Buffers still
        follow rank 0 (``broadcast_buffers``); parameters are all-reduced as usual.

        A private hook, because no public way exists: the conversion is unconditional, and the public
        ``on_fit_start`` that calls this hook also calls the private ``_compile``, so overriding it instead
        would copy SpeechBrain's body. tests/test_pretrain_recipe.py fails if SpeechBrain renames the hook,
        stops calling it from ``on_fit_start`` or stops converting BatchNorm.
        """
        if not (self.distributed_launch and str(self.device).startswith("cpu")):
            super()._wrap_distributed()
            return
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = DistributedDataParallel(
                    module, device_ids=None, find_unused_parameters=self.find_unused_parameters)

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """SpeechBrain's ``fit``; checkpoints after training when there is no valid set."""
        self.no_valid = valid_set is None
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)
